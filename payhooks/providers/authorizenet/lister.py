"""Authorize.Net's record of what happened: its Transaction Details API (JSON, the client
of step.py), which lists transactions, not notifications.

First the unsettled transactions (``getUnsettledTransactionListRequest``: all of them,
whenever submitted), then the batches settled in the window (``getSettledBatchListRequest``,
at most 31 days per call, so in 30-day parts) and each batch's transactions
(``getTransactionListRequest``); both lists are read 1,000 at a time (``paging``, offset
counted in pages from 1), oldest first. A position is the part, the batch and the page.

Each transaction becomes the event its notification would have given, told as that
notification would be (``authcapture.created`` for a captured one, ``refund.created``,
``void.created``), and confirmed by the job with getTransactionDetails, as a notification
is. A notification is keyed by its ``notificationId``, which no list gives back, so a
listed transaction is keyed by itself (``transaction-<transId>-paid``): a payment that came
by webhook too is queued a second time, and its job writes nothing to Nexudus, since the
invoice's marker for (authorizenet, transId) says it is applied (README, "How it stays
exactly-once"); a refund or void counts once under its own object, as the webhook's does.

Money that goes back without a notification is found here only: an eCheck the bank
returned, or charged back (an unauthorised-debit return; card chargebacks are the
merchant's processor's, which Authorize.Net neither handles nor reports). Authorize.Net
records a return as a transaction of its own (status ``returnedItem``, ``chargeback``,
``chargebackReversal``, AnetApiSchema.xsd's transactionStatusEnum; in which batch the lists
give it, it does not say), and flags the payment it returns with ``hasReturnedItems`` (its
getTransactionDetails names the returns in ``returnedItems``), the payment keeping its
status. Neither names how much (the return's own transaction names its payment in no
field Authorize.Net documents), so a payment so flagged is told as a reversal of all of
it (``transaction-<transId>-returned``), before its paid event, so a scan that finds both
holds the payment: not yet applied, it is held; applied, it is flagged for a person.

A transaction listed in one of those statuses is told as a reversal of itself under its
own id (for a return of its own it takes back nothing; were it ever the payment's own
status, it is that payment's reversal), and ``chargebackReversal`` as that undone; never
as paid: the reversal's own transaction, counted as a payment, would pay its invoice twice.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from payhooks.domain.events import (
    Ignored,
    InvoiceRef,
    Normalised,
    PaymentEvent,
    PaymentKind,
    RegularPaymentProvider,
)
from payhooks.providers.authorizenet.receiver import PREFIX, AuthorizeNetWebhook
from payhooks.providers.authorizenet.settings import AuthorizeNetSettings
from payhooks.providers.authorizenet.step import (
    CAPTURED,
    CHARGEBACK_REVERSED,
    CHARGED_BACK,
    REFUNDED,
    RETURNED,
    Refused,
    call,
)
from payhooks.providers.kit.listing import ListedPage, NotListed, Window
from payhooks.providers.kit.receiving import redact_json
from payhooks.providers.kit.step_errors import ProviderLookupError
from payhooks.settings import Settings

PAGE_SIZE = 1000  # the API's largest
#: Settlement dates per getSettledBatchList call: the API takes at most 31 days.
PART = timedelta(days=30)
#: The event type of a status no notification tells: ours, named after the status.
LISTED_ONLY = "authorizenet.transaction."
_PAID = ("paid", PREFIX + "authcapture.created", PaymentKind.PAID)
#: Each listed status, as the events that tell it: what the event id says of it (a void is
#: money returned, told apart from a refund), the notification that would tell it (or
#: LISTED_ONLY's type), and the kind.
TOLD_AS: dict[str, tuple[tuple[str, str, PaymentKind], ...]] = {
    **{status: (_PAID,) for status in CAPTURED},
    **{
        status: (("refunded", PREFIX + "refund.created", PaymentKind.REFUNDED),)
        for status in REFUNDED
    },
    "voided": (("voided", PREFIX + "void.created", PaymentKind.REFUNDED),),
    RETURNED: (("returned", LISTED_ONLY + RETURNED, PaymentKind.REFUNDED),),
    CHARGED_BACK: (("chargeback", LISTED_ONLY + CHARGED_BACK, PaymentKind.REFUNDED),),
    CHARGEBACK_REVERSED: (
        ("chargeback-reversed", LISTED_ONLY + CHARGEBACK_REVERSED, PaymentKind.REINSTATED),
    ),
}
#: A payment the lists flag with ``hasReturnedItems``: all of it went back, told first.
_RETURNED = ("returned", LISTED_ONLY + RETURNED, PaymentKind.REFUNDED)
#: What the transaction lists say of the card and its holder.
CARDHOLDER_FIELDS = ("firstName", "lastName", "accountNumber")


class AuthorizeNetLister:
    name = AuthorizeNetWebhook.name

    def __init__(self, section: AuthorizeNetSettings) -> None:
        if not section.login_id or not section.transaction_key:
            raise NotListed(
                "AUTHORIZENET_LOGIN_ID and AUTHORIZENET_TRANSACTION_KEY are not set (the "
                "Transaction Details API needs them)"
            )
        self._section = section
        # The last part's batches, kept while the scan pages through them.
        self._batches: tuple[tuple[datetime, datetime], list[str]] | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> AuthorizeNetLister:
        return cls(settings.provider(AuthorizeNetSettings))

    def fetch(self, window: Window, cursor: str | None, *, thorough: bool) -> ListedPage:
        at = json.loads(cursor) if cursor else {"unsettled": 1}
        if "unsettled" in at:
            return self._unsettled(int(at["unsettled"]))
        part, batch, page = int(at["part"]), int(at["batch"]), int(at["page"])
        parts = _parts(window)
        batches = self._settled(parts[part])
        while batch >= len(batches):
            if part + 1 >= len(parts):
                return ListedPage((), json.dumps({"part": part + 1, "batch": 0, "page": 1}), False)
            part, batch, page = part + 1, 0, 1
            batches = self._settled(parts[part])
        answer = self._call(
            "getTransactionListRequest",
            {"batchId": batches[batch], **_paged(page)},
        )
        records = _records(answer)
        if len(records) == PAGE_SIZE:
            position = {"part": part, "batch": batch, "page": page + 1}
        else:
            position = {"part": part, "batch": batch + 1, "page": 1}
        last = part + 1 == len(parts) and position["batch"] == len(batches)
        return ListedPage(records, json.dumps(position), more=not last)

    def redact(self, record: bytes) -> bytes | None:
        # The lists name the cardholder and the card's last digits: kept for the trail
        # as the other providers' are, redacted.
        transaction = json.loads(record)
        present = [name for name in CARDHOLDER_FIELDS if transaction.get(name) is not None]
        if not present:
            return redact_json(record)
        transaction.update(dict.fromkeys(present, "[redacted]"))
        return redact_json(_record(transaction)) or _record(transaction)

    def normalise(self, record: bytes) -> list[Normalised]:
        transaction = json.loads(record)
        transaction_id = str(transaction["transId"])
        status = str(transaction.get("transactionStatus", ""))
        told = TOLD_AS.get(status)
        if told is None:
            why = f"{status or 'no status'}: not a capture, refund, void or chargeback"
            return [Ignored(f"transaction-{transaction_id}-{status}", status, why)]
        if status in CAPTURED and transaction.get("hasReturnedItems") in (True, "true"):
            told = (_RETURNED, *told)
        invoice = InvoiceRef.from_text(str(transaction.get("invoiceNumber") or ""))
        normalised: list[Normalised] = []
        for outcome, event_type, kind in told:
            event_id = f"transaction-{transaction_id}-{outcome}"
            if kind is PaymentKind.PAID and not invoice:
                normalised.append(Ignored(event_id, event_type, "no invoiceNumber"))
                continue
            # As the notification's event: the job reads the amount, the invoice and, for
            # a refund, the payment it returns, with getTransactionDetails. A return has no
            # amount: the lists say that it went back, not how much (all of it).
            normalised.append(
                PaymentEvent(
                    provider=self.name,
                    event_id=event_id,
                    event_type=event_type,
                    kind=kind,
                    token=transaction_id,
                    invoice=invoice,
                    amount=None,
                    currency=None,
                    occurred_at=_utc(transaction.get("submitTimeUTC")),
                    object_id=transaction_id,
                    regular_payment_provider=RegularPaymentProvider.AUTHORIZE_NET_SUBSCRIPTION,
                    payment_method="card",
                    details={"listed": status},
                )
            )
        return normalised

    def _unsettled(self, page: int) -> ListedPage:
        answer = self._call("getUnsettledTransactionListRequest", _paged(page))
        # All of it, whatever the window: unsettled is a state, at most a day or so long,
        # and a batch that failed to settle puts its transactions back here with their
        # old submit times (what was seen before is counted seen).
        records = _records(answer)
        if len(records) == PAGE_SIZE:
            return ListedPage(records, json.dumps({"unsettled": page + 1}), more=True)
        return ListedPage(records, json.dumps({"part": 0, "batch": 0, "page": 1}), more=True)

    def _settled(self, part: tuple[datetime, datetime]) -> list[str]:
        """The ids of the batches settled in ``part``, asked once per part."""
        if self._batches is None or self._batches[0] != part:
            answer = self._call(
                "getSettledBatchListRequest",
                {"firstSettlementDate": _date(part[0]), "lastSettlementDate": _date(part[1])},
            )
            batches = [str(b["batchId"]) for b in answer.get("batchList") or []]
            self._batches = (part, batches)
        return self._batches[1]

    def _call(self, request: str, fields: dict[str, Any]) -> dict[str, Any]:
        try:
            return call(self._section, request, fields)
        except Refused as exc:
            raise ProviderLookupError(
                f"Authorize.Net refused {request}: {exc} (E00007: check AUTHORIZENET_LOGIN_ID"
                " and AUTHORIZENET_TRANSACTION_KEY; E00011: enable the Transaction Details API)"
                if exc.code in ("E00007", "E00011")
                else f"Authorize.Net refused {request}: {exc}"
            ) from None


def _parts(window: Window) -> list[tuple[datetime, datetime]]:
    parts = []
    start = window.since
    while True:
        end = min(start + PART, window.until)
        parts.append((start, end))
        if end >= window.until:
            return parts
        start = end


def _paged(page: int) -> dict[str, Any]:
    return {
        "sorting": {"orderBy": "submitTimeUTC", "orderDescending": "false"},
        "paging": {"limit": str(PAGE_SIZE), "offset": str(page)},
    }


def _records(answer: dict[str, Any]) -> tuple[bytes, ...]:
    return tuple(_record(t) for t in answer.get("transactions") or [])


def _record(transaction: dict[str, Any]) -> bytes:
    return json.dumps(transaction, separators=(",", ":")).encode()


def _date(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _utc(text: Any) -> datetime:
    try:
        at = datetime.fromisoformat(str(text))  # Python 3.11 reads the Z
    except ValueError:
        return datetime.fromtimestamp(0, tz=UTC)
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)
