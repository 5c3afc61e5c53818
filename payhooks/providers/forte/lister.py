"""Forte's record of what happened: each configured location's transactions, and its eCheck
settlements, through REST API v3 (Forte has no event log, and sends no webhook when an
eCheck is funded or returned, or a card sale held in ``review`` is released).

``GET {api}/organizations/{org}/locations/{loc}/transactions`` filtered by
``start_received_date``/``end_received_date``, then ``…/settlements`` filtered by
``start_settle_date``/``end_settle_date`` (``settle_type`` ``reject``: an ACH return;
``deposit``: the money received, dated the day it came, so an eCheck funded days after
the sale's own date is found), each paged by ``page_size``/``page_index``, location after
location. Forte's filters take dates, in its own time zone: the window is widened by a day
each side (what was seen before is seen, not queued again). Each sale is the event of its
status, ``trn_…:<status>:listed``; a return, the event of its transaction ``rejected``, a
deposit its ``funded`` (``settled`` for a card). The job
reads the transaction back from Forte as for a webhook (step.py), and marks the status it
confirmed as listed, so a sale a webhook brought is seen here, not queued twice.
"""

from __future__ import annotations

import json
from datetime import UTC, timedelta
from typing import Any

from payhooks.domain.events import Ignored, Normalised
from payhooks.providers.forte.formats import STATUS, TRANSACTION_ID, listed_event_id
from payhooks.providers.forte.receiver import MONEY_RETURNED, sale_event
from payhooks.providers.forte.settings import ForteSettings
from payhooks.providers.forte.step import CREDENTIALS, forte_get, json_of
from payhooks.providers.kit.listing import ListedPage, NotListed, Window
from payhooks.providers.kit.receiver_errors import MalformedPayload
from payhooks.providers.kit.receiving import load_json_object, redact_json
from payhooks.providers.kit.step_errors import ProviderLookupError, ProviderLookupUnavailable
from payhooks.settings import Settings

PAGE_SIZE = 1000  # Forte's largest
#: The lists read per location, in order, with the filter each takes.
LISTS = ("transactions", "settlements")
RETURNED = "rejected"  # the status of an eCheck sale returned before it was funded
FUNDED = "funded"  # an eCheck sale's once the money came (its settlement a deposit)


class ForteLister:
    name = "forte"

    def __init__(self, section: ForteSettings, *, page_size: int = PAGE_SIZE) -> None:
        if not (section.organization_id and section.api_access_id and section.api_secure_key):
            raise NotListed(f"{CREDENTIALS} are not all set (Forte's lists need them)")
        if not section.location_ids:
            raise NotListed("FORTE_LOCATION_IDS is not set (Forte lists transactions by location)")
        self._section = section
        self._page_size = page_size

    @classmethod
    def from_settings(cls, settings: Settings) -> ForteLister:
        return cls(settings.provider(ForteSettings))

    def fetch(self, window: Window, cursor: str | None, *, thorough: bool) -> ListedPage:
        # Forte says nothing of delivery: a quick scan reads what a thorough one does.
        at = json.loads(cursor) if cursor else {"location": 0, "list": 0, "page": 0}
        location = self._section.location_ids[int(at["location"])]
        listing, page = int(at["list"]), int(at["page"])
        answer = self._list(location, LISTS[listing], window, page)
        results = answer.get("results")
        if not isinstance(results, list) or not all(isinstance(r, dict) for r in results):
            raise ProviderLookupUnavailable(f"Forte's {LISTS[listing]} list without results")
        records = tuple(
            # The location is the one asked for (a record that omits it still names it).
            json.dumps({"location_id": location, **record}, separators=(",", ":")).encode()
            for record in results
        )
        total = answer.get("number_results")
        size = self._page_size
        more_pages = len(results) == size and (
            not isinstance(total, int) or (page + 1) * size < total
        )
        if more_pages:
            position = {"location": at["location"], "list": listing, "page": page + 1}
        elif listing + 1 < len(LISTS):
            position = {"location": at["location"], "list": listing + 1, "page": 0}
        else:
            position = {"location": int(at["location"]) + 1, "list": 0, "page": 0}
        more = position["location"] < len(self._section.location_ids)
        return ListedPage(records, json.dumps(position), more=more)

    def redact(self, record: bytes) -> bytes | None:
        return redact_json(record)

    def normalise(self, record: bytes) -> list[Normalised]:
        listed = load_json_object(record)
        transaction_id = listed.get("transaction_id")
        if not isinstance(transaction_id, str) or not TRANSACTION_ID.fullmatch(transaction_id):
            raise MalformedPayload("Forte record without a readable transaction_id")
        if "settle_id" in listed:
            return [_settlement(listed, transaction_id)]
        status = str(listed.get("status") or "").lower()
        if not STATUS.fullmatch(status):
            raise MalformedPayload("Forte transaction without a readable status")
        event_id = listed_event_id(transaction_id, status)
        action = str(listed.get("action") or "")
        if action in MONEY_RETURNED:
            return [
                Ignored(
                    event_id,
                    f"transaction.{action}",
                    "money back to the customer: payhooks does not record Forte credits or "
                    "voids yet (handle it by hand)",
                )
            ]
        if action != "sale":
            return [Ignored(event_id, f"transaction.{action[:40]}", "not a sale")]
        return [
            sale_event(listed, event_id=event_id, status=status, location=listed["location_id"])
        ]

    def _list(self, location: str, listing: str, window: Window, page: int) -> dict[str, Any]:
        since = (window.since.astimezone(UTC) - timedelta(days=1)).date().isoformat()
        until = (window.until.astimezone(UTC) + timedelta(days=1)).date().isoformat()
        if listing == "transactions":
            terms = f"start_received_date eq '{since}' and end_received_date eq '{until}'"
        else:
            # Every type: a ``reject`` is a return, a ``deposit`` the money received (an
            # eCheck funded days after the date its sale is listed by).
            terms = f"start_settle_date eq '{since}' and end_settle_date eq '{until}'"
        response = forte_get(
            self._section,
            f"/locations/{location}/{listing}",
            {"filter": terms, "page_size": str(self._page_size), "page_index": str(page)},
        )
        answer = json_of(response, f"Forte's {listing} list")
        if response.status_code != 200 or not isinstance(answer, dict):
            raise ProviderLookupError(
                f"Forte refused the {listing} list of {location} ({response.status_code})"
            )
        return answer


def _settlement(listed: dict[str, Any], transaction_id: str) -> Normalised:
    """A settlement is its sale's status as of that day: a ``reject`` (an ACH return) its
    ``rejected``, a ``deposit`` (the money received) its ``funded``, or ``settled`` for a
    card; the same event as the transactions list gives for that status."""
    settle_type = str(listed.get("settle_type") or "")
    card = str(listed.get("method") or "").lower() == "card"
    status = {"reject": RETURNED, "deposit": "settled" if card else FUNDED}.get(settle_type)
    if status is None:
        event_id = listed_event_id(transaction_id, f"settlement-{settle_type[:20]}")
        return Ignored(event_id, f"settlement.{settle_type[:40]}", "not a deposit or return")
    # When it settled stands in for when it was made (a hint: the job takes Forte's
    # record of the sale).
    sale: dict[str, Any] = {
        "transaction_id": transaction_id,
        "card" if card else "echeck": {},
        "received_date": listed.get("settle_date"),
    }
    event_id = listed_event_id(transaction_id, status)
    return sale_event(sale, event_id=event_id, status=status, location=listed.get("location_id"))
