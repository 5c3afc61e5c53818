"""Braintree's record of what happened: it keeps no event log, so reconciliation searches
its transactions by status-change time through the official SDK (``TransactionSearch``:
``POST …/transactions/advanced_search_ids`` for the matching ids, then
``…/advanced_search`` for each batch of them), and turns each sale into the event its
webhook would have given, keyed as the webhook's is (``transaction-<id>-paid``, receiver.py),
so a payment a webhook brought is seen, not queued again.

Three searches, one after the other: refunds (credit transactions) created in the window,
then sales submitted for settlement in it (a card payment is captured then; Braintree
notifies only subscriptions' charges of it), then sales settled in it (an ACH payment is
paid only once settled, as its ``transaction_settled`` notification says). A transaction
found by two searches is one event, seen the second time. A search's position is its
name, the index in its list of ids and the last id read: a resumed scan searches again and
goes on after that id. Braintree answers at most 10,000 ids per search: a window with more
is refused (reconcile shorter windows) rather than read in part.

Refunds: Braintree notifies none, so the list is the only way payhooks learns of them. A
refund is a credit naming its sale (``refunded_transaction_id``); it is the REFUNDED
event of the sale's payment (the sale's id is its token, as for the sale's own events), for
the credit's amount, keyed by the credit (``transaction-<credit id>-refunded``, which no
sale's key can be: transaction ids are unique across types), so several partial refunds
add up and one refund read by overlapping scans counts once (workers/reversals.py). A
refund counts once submitted for settlement; one voided or declined is the REINSTATED
event of that refund (``transaction-<credit id>-reinstated``), which undoes it for good
had an earlier scan counted it. Refunds are searched first, so that a sale refunded in the
window is queued after its refunds: its job, run after theirs, counts what is left (none:
no write) rather than settling the invoice with money that went back, which would be
flagged for a person. A sale refunded in part or whole is still its paid event: the worker
nets its refunds, whichever job runs first.

Not reconciled: disputes (their notifications are keyed by the notification's time, which
no search gives back, and a dispute search is another API); failed subscription charges,
which write nothing to Nexudus, unless a transaction found is already
``settlement_declined``.

A refund voided or declined after every window listing it has passed (searched by creation
time, no window lists it again) is read back by id (the lister ``FollowsPending``): the
scan keeps each refund it lists that is not final yet (``pending``: neither settled nor
undone) and, after each window, reads those back (``read_back``, through the same
searches, ``PAGE_SIZE`` ids at a time) and records their events as for any listed
refund, until they are final (payhooks/storage/pending_watch.py).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any
from urllib.parse import urlsplit

import braintree
from braintree import exceptions as bt
from braintree.exceptions.braintree_error import BraintreeError
from braintree.transaction_search import TransactionSearch

from payhooks.domain.events import Ignored, Normalised, PaymentKind
from payhooks.providers.braintree.receiver import (
    BraintreeWebhook,
    outcome_event_id,
    refund_event,
    transaction_event,
)
from payhooks.providers.braintree.settings import BraintreeSettings
from payhooks.providers.kit.listing import (
    ListedPage,
    NotListed,
    Pending,
    RateLimited,
    Window,
)
from payhooks.providers.kit.step_errors import ProviderLookupError, ProviderLookupUnavailable
from payhooks.settings import Settings

#: The searches a scan runs, in order: (name, the time field it filters on, the type).
PHASES = (
    ("refunds", "created_at", braintree.Transaction.Type.Credit),
    ("submitted", "submitted_for_settlement_at", braintree.Transaction.Type.Sale),
    ("settled", "settled_at", braintree.Transaction.Type.Sale),
)
#: A cursor of the release before, numbering its two searches.
FORMER_PHASES = ("submitted", "settled")
#: The most ids one Braintree search returns.
MAX_RESULTS = 10_000
#: Transactions read per page: Braintree's own page size (the SDK fetches by its pages).
PAGE_SIZE = 50
ACH = "us_bank_account"
#: A sale whose money was captured: paid (for ACH, only ``settled`` is).
CAPTURED = frozenset(
    {
        "submitted_for_settlement",
        "settling",
        "settlement_pending",
        "settlement_confirmed",
        "settled",
    }
)
#: The statuses of a subscription charge that failed (``subscription_charged_unsuccessfully``).
CHARGE_FAILED = frozenset({"failed", "processor_declined", "gateway_rejected"})
#: A refund whose money does not go back after all (voided before settling, declined).
REFUND_UNDONE = CHARGE_FAILED | {"voided", "settlement_declined"}
#: A refund whose state no longer changes what was counted: settled (its money went
#: back for good), or undone (its reinstatement was recorded). Any other is read again.
REFUND_FINAL = REFUND_UNDONE | {"settled", "authorization_expired"}
REFUSED = (bt.AuthenticationError, bt.AuthorizationError, bt.NotFoundError)


class BraintreeLister:
    name = BraintreeWebhook.name
    #: Refunds still open at once: each scan reads them all back (two search calls per
    #: PAGE_SIZE), so 1,000 cost a scan at most 40 calls.
    most_pending = 1_000
    read_back_batch = PAGE_SIZE

    def __init__(self, section: BraintreeSettings) -> None:
        if not section.keys or not section.merchant_id:
            raise NotListed("BRAINTREE_KEYS and BRAINTREE_MERCHANT_ID are needed to search")
        public, private = section.keys[0]
        self._gateway = braintree.BraintreeGateway(
            braintree.Configuration(
                _environment(section),
                section.merchant_id,
                public,
                private,
                timeout=30,
                wrap_http_exceptions=True,
            )
        )
        self._invoice_field = section.invoice_field
        # The last search's ids, kept while the scan pages through them.
        self._search: tuple[tuple[int, datetime, datetime], list[str]] | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> BraintreeLister:
        return cls(settings.provider(BraintreeSettings))

    def fetch(self, window: Window, cursor: str | None, *, thorough: bool) -> ListedPage:
        at: dict[str, Any] = json.loads(cursor) if cursor else {"phase": PHASES[0][0]}
        phase = _phase(at["phase"])
        if phase == len(PHASES):
            return ListedPage((), json.dumps({"phase": "done"}), more=False)
        ids = self._matching(window, phase)
        start = int(at.get("at", 0))
        last = str(at.get("last", ""))
        if last in ids:
            start = ids.index(last) + 1
        batch = ids[start : start + PAGE_SIZE]
        records = tuple(_record(transaction) for transaction in self._transactions(batch))
        name = PHASES[phase][0]
        if start + len(batch) < len(ids):
            position = {"phase": name, "at": start + len(batch), "last": batch[-1]}
            return ListedPage(records, json.dumps(position), more=True)
        following = PHASES[phase + 1][0] if phase + 1 < len(PHASES) else "done"
        return ListedPage(records, json.dumps({"phase": following}), more=following != "done")

    def redact(self, record: bytes) -> bytes | None:
        return None  # the record is ours, without card or bank details (_record)

    def normalise(self, record: bytes) -> list[Normalised]:
        sale = json.loads(record)
        transaction = SimpleNamespace(**sale)
        status, ach = str(sale["status"]), sale.get("payment_instrument_type") == ACH
        subscription = sale.get("subscription_id")
        if sale.get("type") == braintree.Transaction.Type.Credit:
            return [self._refund(sale, transaction)]
        # A sale refunded in part or whole is paid all the same: its refunds are events of
        # their own (the refunds' search), netted by the worker whichever comes first.
        if status == "settled" or (status in CAPTURED and not ach):
            kind = PaymentKind.PAID
            event_type = _paid_kind(sale)
        elif status == "settlement_declined":
            kind, event_type = PaymentKind.FAILED, "transaction_settlement_declined"
        elif status in CHARGE_FAILED and subscription:
            kind, event_type = PaymentKind.FAILED, "subscription_charged_unsuccessfully"
        else:
            why = "ACH not settled yet" if ach and status in CAPTURED else f"sale {status}"
            return [Ignored(f"transaction-{sale['id']}-{status}", status, why)]
        details = {"subscription": str(subscription)} if subscription else {}
        if sale.get("payment_method_token"):
            details["payment_method_token"] = str(sale["payment_method_token"])
        return [
            transaction_event(
                transaction,
                event_id=outcome_event_id(str(sale["id"]), kind),
                event_type=event_type,
                kind=kind,
                occurred_at=_status_time(sale, kind),
                invoice_field=self._invoice_field,
                details=details,
            )
        ]

    def pending(self, record: bytes) -> Pending | None:
        """A refund (a credit naming its sale) and whether it may still be voided or
        declined; a sale is final once paid (its refunds are transactions of their own)."""
        credit = json.loads(record)
        if not isinstance(credit, dict) or credit.get("type") != braintree.Transaction.Type.Credit:
            return None
        created = credit.get("created_at")
        if not (credit.get("id") and credit.get("refunded_transaction_id") and created):
            return None  # a refund names its sale, and Braintree dates every transaction
        still_open = str(credit.get("status")) not in REFUND_FINAL
        when = datetime.fromisoformat(str(created))
        return Pending(str(credit["id"]), open=still_open, created=when)

    def read_back(self, record_ids: Sequence[str]) -> dict[str, bytes]:
        """The refunds by id, as the window's searches read them (``ids`` in batches of
        PAGE_SIZE: one ``advanced_search_ids`` and one ``advanced_search`` each)."""
        found: dict[str, bytes] = {}
        for start in range(0, len(record_ids), PAGE_SIZE):
            batch = list(record_ids[start : start + PAGE_SIZE])
            found |= {str(t.id): _record(t) for t in self._transactions(batch)}
        return found

    def _refund(self, credit: dict[str, Any], transaction: Any) -> Normalised:
        status = str(credit["status"])
        if status in CAPTURED or status in REFUND_UNDONE:
            went_back = status in CAPTURED
            event_type = "transaction_refunded" if went_back else f"refund_{status}"
            at = credit.get("created_at")
            when = datetime.fromisoformat(at) if at else datetime.fromtimestamp(0, tz=UTC)
            return refund_event(transaction, went_back, event_type, when, self._invoice_field)
        return Ignored(f"transaction-{credit['id']}-{status}", status, f"refund {status}")

    def _matching(self, window: Window, phase: int) -> list[str]:
        """The ids of the transactions ``PHASES[phase]`` finds in the window, searched
        once per window and phase."""
        key = (phase, window.since, window.until)
        if self._search is None or self._search[0] != key:
            _, name, kind = PHASES[phase]
            field = getattr(TransactionSearch, name)
            criteria = [
                field.between(_naive_utc(window.since), _naive_utc(window.until)),
                TransactionSearch.type == kind,
            ]
            if kind == braintree.Transaction.Type.Credit:
                # Refunds only: a detached credit (``Transaction.credit``) refunds no sale.
                criteria.append(TransactionSearch.refund == True)
            collection = self._call(lambda: self._gateway.transaction.search(*criteria))
            ids = [str(i) for i in collection.ids]
            if len(ids) >= MAX_RESULTS:
                what = "refunds" if kind == braintree.Transaction.Type.Credit else "sales"
                raise ProviderLookupError(
                    f"Braintree's search of {what} by {name} reached its limit of"
                    f" {MAX_RESULTS} results: reconcile shorter windows"
                )
            self._search = (key, ids)
        return self._search[1]

    def _transactions(self, ids: list[str]) -> list[Any]:
        if not ids:
            return []
        found: list[Any] = self._call(
            lambda: list(self._gateway.transaction.search(TransactionSearch.ids.in_list(ids)))
        )
        return found

    def _call(self, request: Any) -> Any:
        try:
            return request()
        except bt.TooManyRequestsError:
            raise RateLimited("Braintree answered 429") from None
        except REFUSED as exc:
            raise ProviderLookupError(
                f"Braintree refused the search ({exc.__class__.__name__}): check BRAINTREE_KEYS,"
                " BRAINTREE_MERCHANT_ID and BRAINTREE_ENVIRONMENT"
            ) from None
        except BraintreeError as exc:
            raise ProviderLookupUnavailable(
                f"Braintree's transaction search unavailable ({exc.__class__.__name__})"
            ) from None


def _environment(section: BraintreeSettings) -> braintree.Environment:
    if not section.api_url:
        if section.environment == "production":
            return braintree.Environment.Production
        return braintree.Environment.Sandbox
    parts = urlsplit(section.api_url)
    secure = parts.scheme == "https"
    port = str(parts.port or (443 if secure else 80))
    # The SDK speaks https on port 443 only, with its own CA bundle; a stand-in is http.
    certificate = braintree.Environment.Production.ssl_certificate if secure else None
    return braintree.Environment("payhooks", parts.hostname, port, "", secure, certificate)


def _phase(named: object) -> int:
    """The index in PHASES of a cursor's search (by its name, or by the number the release
    before gave it), or len(PHASES) once every search was read."""
    if isinstance(named, int):
        named = FORMER_PHASES[named] if named < len(FORMER_PHASES) else "done"
    names = [name for name, _, _ in PHASES]
    return names.index(str(named)) if named in names else len(PHASES)


def _naive_utc(at: datetime) -> datetime:
    # The SDK writes a datetime's fields followed by "Z": they must be UTC's.
    return at.astimezone(UTC).replace(tzinfo=None)


def _record(transaction: Any) -> bytes:
    """What reconciliation reads of a transaction (and keeps as its origin): no card or
    bank details."""
    custom = getattr(transaction, "custom_fields", None)
    card = getattr(transaction, "credit_card_details", None)
    history = getattr(transaction, "status_history", None) or []
    amount = getattr(transaction, "amount", None)
    return json.dumps(
        {
            "id": str(transaction.id),
            "type": str(transaction.type),
            "status": str(transaction.status),
            "order_id": getattr(transaction, "order_id", None),
            "custom_fields": custom if isinstance(custom, dict) else {},
            "amount": str(amount) if amount is not None else None,
            "currency_iso_code": getattr(transaction, "currency_iso_code", None),
            "payment_instrument_type": getattr(transaction, "payment_instrument_type", None),
            "subscription_id": getattr(transaction, "subscription_id", None),
            "refund_ids": [str(i) for i in getattr(transaction, "refund_ids", None) or []],
            "refunded_transaction_id": getattr(transaction, "refunded_transaction_id", None),
            "payment_method_token": getattr(card, "token", None),
            "status_history": [
                {"status": str(event.status), "timestamp": _iso(event.timestamp)}
                for event in history
            ],
            "created_at": _iso(getattr(transaction, "created_at", None)),
        },
        separators=(",", ":"),
    ).encode()


def _iso(at: datetime | None) -> str | None:
    # The SDK gives naive datetimes in UTC.
    return None if at is None else at.replace(tzinfo=UTC).isoformat()


def _paid_kind(sale: dict[str, Any]) -> str:
    """The notification that says so, if Braintree sends one (a card sale outside a
    subscription has none: reconciliation is the only way it is learnt of)."""
    if sale.get("subscription_id"):
        return "subscription_charged_successfully"
    if sale.get("payment_instrument_type") == "local_payment":
        return "local_payment_completed"
    if sale.get("payment_instrument_type") == ACH:
        return "transaction_settled"
    return "transaction_captured"  # no Braintree kind: named for the trail


def _status_time(sale: dict[str, Any], kind: PaymentKind) -> datetime:
    """When the sale reached the status its event tells (paid: captured, or for ACH
    settled; failed: declined), from its status history."""
    wanted = frozenset({"settled"}) if sale.get("payment_instrument_type") == ACH else CAPTURED
    if kind is PaymentKind.FAILED:
        wanted = CHARGE_FAILED | {"settlement_declined"}
    times = [e["timestamp"] for e in sale.get("status_history") or [] if e["status"] in wanted]
    chosen = min(times) if times else sale.get("created_at")
    return datetime.fromisoformat(chosen) if chosen else datetime.fromtimestamp(0, tz=UTC)
