"""Spreedly's record of what happened: ``GET /v1/transactions.json``, the environment's
transactions, each turned into the event its callback would have given (token and state,
so the same dedupe key), through the callback's own normaliser.

Spreedly's list takes no time filter: it is ordered by ``created_at`` (ties by token),
20 a page, paged by ``since_token`` (the last record's token), and ``order=desc`` reverses
it (developer.spreedly.com/reference/order-and-pagination). So the scan reads newest
first, skips what was created after the window, and stops at the first page that reaches
before the window's start. Pages may overlap (a page fetched from a token that is not the
last one read repeats records): the cursor keeps the oldest ``created_at`` read and the
tokens read at that instant, so a repeated record is dropped, and a page that adds nothing
ends the scan. A quick scan and a thorough one read the same: Spreedly records no
delivery of its callbacks.

The list says nothing of a purchase's later state: one created pending (offsite, 3-D
Secure, ACH) that succeeds after every window has passed its creation is listed by no
later scan. So the lister ``FollowsPending``: a purchase listed pending is kept by the
scan (``pending``) and read back by itself, one at a time (``read_back``, the job's own
lookup), by later scans until it settles. HTTP Basic with ``SPREEDLY_ENVIRONMENT_KEY`` and
``SPREEDLY_ACCESS_SECRET``, as the job's lookup.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from payhooks.domain.events import Ignored, Normalised, PaymentEvent
from payhooks.providers.kit.listing import (
    ListedPage,
    NotListed,
    Pending,
    Window,
    list_answer,
)
from payhooks.providers.kit.receiver_errors import MalformedPayload
from payhooks.providers.kit.receiving import redact_json_fields
from payhooks.providers.kit.step_errors import ProviderLookupError, ProviderLookupUnavailable
from payhooks.providers.spreedly.formats import NAME, PENDING_STATES, PURCHASES
from payhooks.providers.spreedly.receiver import CARD_FIELDS, transaction_event
from payhooks.providers.spreedly.settings import SpreedlySettings
from payhooks.providers.spreedly.step import (
    API,
    CREDENTIALS,
    confirmed_event,
    read_transaction,
)
from payhooks.settings import Settings

#: Spreedly's page of an unbounded list (its "order and pagination" page).
PAGE_SIZE = 20
#: The fields ``transaction_event`` reads, as a callback signs them.
FIELDS = ("token", "state", "transaction_type", "on_test_gateway", "updated_at", "order_id")
#: A token as Spreedly makes them; only such a one is kept and put in a lookup's path.
TOKEN = re.compile(r"[A-Za-z0-9]{1,64}")


class SpreedlyLister:
    name = NAME
    #: Far above what a provider leaves pending for weeks (each costs one lookup per
    #: scan), low enough that the watch stays a few hundred kB.
    most_pending = 10_000
    #: One lookup per transaction: a 429 waited out asks again for that one only.
    read_back_batch = 1

    def __init__(self, section: SpreedlySettings) -> None:
        if not (section.environment_key and section.access_secret):
            raise NotListed(f"{CREDENTIALS} are not set (its transactions list needs them)")
        self._section = section
        self._auth = (section.environment_key, section.access_secret)
        self._url = f"{section.api_url.rstrip('/')}/v1/transactions.json"

    @classmethod
    def from_settings(cls, settings: Settings) -> SpreedlyLister:
        return cls(settings.provider(SpreedlySettings))

    def fetch(self, window: Window, cursor: str | None, *, thorough: bool) -> ListedPage:
        at: dict[str, Any] = json.loads(cursor) if cursor else {}
        params = {"order": "desc"}
        if at.get("since"):
            params["since_token"] = str(at["since"])
        listed = self._list(params)
        oldest = _instant(at.get("oldest"))
        edge = set(at.get("edge") or ())
        fresh = [t for t in listed if not _read_before(t, oldest, edge)]
        records = []
        passed_start = False
        for transaction in fresh:
            created = _instant(transaction.get("created_at"))
            if created is not None and created < window.since:
                passed_start = True  # newest first: everything after this is older still
                continue
            if created is not None and created > window.until:
                continue
            records.append(json.dumps(transaction, separators=(",", ":")).encode())
        since = str(listed[-1].get("token") or "") if listed else ""
        # A short page is the list's last (Spreedly pages by 20): no empty call after it.
        last_page = len(listed) < PAGE_SIZE
        if last_page or passed_start or not fresh or not since or since == at.get("since"):
            return ListedPage(tuple(records), cursor or "{}", more=False)
        times = [c for c in (_instant(t.get("created_at")) for t in fresh) if c is not None]
        low = min(times) if times else oldest
        if low is not None and low != oldest:
            edge = set()
        edge |= {str(t.get("token")) for t in fresh if _instant(t.get("created_at")) == low}
        position = {
            "since": since,
            "oldest": None if low is None else low.isoformat(),
            "edge": sorted(edge),
        }
        return ListedPage(tuple(records), json.dumps(position), more=True)

    def redact(self, record: bytes) -> bytes | None:
        return redact_json_fields(record, CARD_FIELDS)

    def normalise(self, record: bytes) -> list[Normalised]:
        try:
            transaction = json.loads(record)
        except ValueError:
            raise MalformedPayload("a Spreedly transaction that is not JSON") from None
        if not isinstance(transaction, dict):
            raise MalformedPayload("a Spreedly transaction that is not an object")
        values = {field: _text(transaction.get(field)) for field in FIELDS}
        if not (values["token"] and values["state"] and values["transaction_type"]):
            raise MalformedPayload("a Spreedly transaction without token, state or type")
        event = transaction_event(values, self._section)
        if (
            isinstance(event, PaymentEvent)
            and values["transaction_type"] in PURCHASES
            and not values["order_id"]
        ):
            # Every purchase of the environment is listed, not only those a callback would
            # bring: one without an order id pays no Nexudus invoice.
            return [Ignored(event.event_id, event.event_type, "no order_id (no invoice)")]
        return [event]

    def confirm(self, record: bytes, event: PaymentEvent) -> PaymentEvent | None:
        # The list holds the same transaction record the job reads back (the audit asks).
        try:
            return confirmed_event(event, json.loads(record), self._section)
        except (ProviderLookupError, ValueError, AttributeError):
            return None

    def pending(self, record: bytes) -> Pending | None:
        try:
            transaction = json.loads(record)
        except ValueError:
            return None
        if not isinstance(transaction, dict):
            return None
        token = _text(transaction.get("token"))
        created = _instant(transaction.get("created_at"))
        if (
            _text(transaction.get("transaction_type")) not in PURCHASES
            or created is None
            or not TOKEN.fullmatch(token)
        ):
            return None
        if _text(transaction.get("state")) not in PENDING_STATES:
            return Pending(token, open=False, created=created)
        # Kept only when its settling would be recorded: with an order id, not on the test
        # gateway (unless applied), as ``normalise`` decides it.
        try:
            events = self.normalise(record)
        except MalformedPayload:
            return None
        if not any(isinstance(event, PaymentEvent) for event in events):
            return None
        return Pending(token, open=True, created=created)

    def read_back(self, record_ids: Sequence[str]) -> dict[str, bytes]:
        found = {}
        for token in record_ids:
            transaction = read_transaction(self._section, token)
            if transaction is not None:
                found[token] = json.dumps(transaction, separators=(",", ":")).encode()
        return found

    def _list(self, params: dict[str, str]) -> list[dict[str, Any]]:
        response = API.send(
            "GET",
            self._url,
            params=params,
            auth=self._auth,
            headers={"Accept": "application/json"},
        )
        what = "Spreedly's transactions list"
        listed = list_answer(response, what).get("transactions")
        if not isinstance(listed, list):
            raise ProviderLookupUnavailable(f"{what} answered without its transactions")
        return [t for t in listed if isinstance(t, dict)]


def _read_before(transaction: dict[str, Any], oldest: datetime | None, edge: set[str]) -> bool:
    """Read on an earlier page of this scan (pages may overlap)."""
    created = _instant(transaction.get("created_at"))
    if oldest is None or created is None:
        return False
    return created > oldest or (created == oldest and str(transaction.get("token")) in edge)


def _instant(value: Any) -> datetime | None:
    """Spreedly's ``2017-06-22T13:19:11Z``; None when absent or unreadable."""
    try:
        when = datetime.fromisoformat(str(value)) if value else None
    except ValueError:
        return None
    return when if when is None or when.tzinfo else None


def _text(value: Any) -> str:
    """A JSON value as the callback's XML writes it (``true``, empty for null)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)
