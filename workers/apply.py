"""Apply one payment event to Nexudus, idempotently.

Paid: find the invoice, record the payment token unless it is there already, and set
PaidOn on the full record when the money settles it. Pending: the token only. Failed
and refunded: nothing is written (PaidOn is never cleared); the outcome is logged.

Calls per newly paid payment whose event carries the invoice id: GET invoice, POST
token, PUT invoice. The token search happens only when an earlier attempt may have
written (see workers/ledger.py).
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from datetime import UTC
from decimal import Decimal, InvalidOperation
from typing import Any

from redis.exceptions import LockError

from payhooks.events import InvoiceRef, PaymentEvent, PaymentKind
from payhooks.money import exponent
from workers.errors import (
    AmountMismatch,
    InvoiceAlreadyPaid,
    InvoiceNotFound,
    InvoiceNotPayable,
    NexudusPermanentError,
    TransientError,
)
from workers.ledger import Ledger, TokenState
from workers.nexudus import NexudusClient, Record

log = logging.getLogger("payhooks.job")


@dataclass(frozen=True, slots=True)
class Outcome:
    result: str  # "applied", "token_only", "already_applied", "no_write"
    invoice_id: int | None = None
    token_id: int | None = None
    token_created: bool = False
    paid_on_set: bool = False
    note: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def apply_event(event: PaymentEvent, nexudus: NexudusClient, ledger: Ledger) -> Outcome:
    if event.kind in (PaymentKind.FAILED, PaymentKind.REFUNDED):
        return Outcome("no_write", event.invoice.invoice_id, note=f"{event.kind.value} event")
    if event.regular_payment_provider is None:
        raise ValueError("payment provider must be resolved before applying")
    if not event.invoice:
        # Known only once the provider's API was asked (GoCardless): a payment that is
        # not for a Nexudus invoice is none of our business.
        return Outcome("ignored", note="the payment names no Nexudus invoice")

    invoice_id = resolve_invoice_id(event.invoice, nexudus)
    lock = ledger.lock(invoice_id)
    if not lock.acquire():
        raise TransientError(f"invoice {invoice_id} is locked by another job")
    try:
        return _apply_locked(event, invoice_id, nexudus, ledger)
    finally:
        try:
            lock.release()
        except LockError:
            log.warning("billing.lock_expired", extra={"invoice_id": invoice_id})


def _apply_locked(
    event: PaymentEvent, invoice_id: int, nexudus: NexudusClient, ledger: Ledger
) -> Outcome:
    known = ledger.token_state(invoice_id, event.token)
    if known.token_id is not None and (known.invoice_paid or event.kind is PaymentKind.PENDING):
        # Another event of this payment was applied already: nothing to ask Nexudus.
        result = "token_only" if event.kind is PaymentKind.PENDING else "already_applied"
        return Outcome(result, invoice_id, known.token_id, note="applied by an earlier event")

    invoice = nexudus.get_invoice(invoice_id)
    if invoice is None:
        raise InvoiceNotFound(f"invoice id {invoice_id}")
    _check_payable(invoice, invoice_id)
    already_paid = bool(invoice.get("PaidOn"))
    ledger.bind_payment(event.provider, event.token, invoice_id)

    blocker = remark = None
    if event.kind is PaymentKind.PAID and not already_paid:
        blocker, remark = assess_amount(event, invoice)
    elif event.kind is PaymentKind.PAID and known.token_id is None:
        # Paid before this payment was recorded on it: by another payment, or by us with
        # our marker lost. Only a search tells; a new token here means paid twice.
        known = TokenState(may_exist=True)
        remark = f"the invoice was already paid (PaidOn {invoice.get('PaidOn')})"
    note = f"NOT marked paid: {blocker}" if blocker else remark
    token_id, created = _ensure_token(event, invoice_id, known, nexudus, ledger, note)

    if event.kind is PaymentKind.PENDING:
        return Outcome("token_only", invoice_id, token_id, created, note="payment pending")
    if already_paid:
        if created:
            raise InvoiceAlreadyPaid(invoice_id, str(invoice.get("PaidOn")), event.token)
        ledger.mark_paid(invoice_id, event.token, token_id)
        return Outcome("already_applied", invoice_id, token_id, created, note="PaidOn already set")
    if blocker is not None:
        raise AmountMismatch(invoice_id, blocker)

    # PUT replaces the whole record: send back everything GET gave, changing only PaidOn.
    paid_on = event.occurred_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    nexudus.put_invoice({**invoice, "PaidOn": paid_on})
    ledger.mark_paid(invoice_id, event.token, token_id)
    return Outcome("applied", invoice_id, token_id, created, paid_on_set=True, note=remark or "")


def resolve_invoice_id(ref: InvoiceRef, nexudus: NexudusClient) -> int:
    if ref.invoice_id is not None:
        return ref.invoice_id
    number = ref.number or ""
    # Nexudus string filters may match substrings: compare exactly on our side.
    for field in ("InvoiceNumber", "PaymentReference"):
        records = nexudus.search_invoices({f"CoworkerInvoice_{field}": number})
        matches = [
            r
            for r in records
            if str(r.get(field) or "") == number and not r.get("CreditNote") and not r.get("Void")
        ]
        ids = sorted({int(r["Id"]) for r in matches if isinstance(r.get("Id"), int)})
        if len(ids) == 1:
            return ids[0]
        if len(ids) > 1:
            raise InvoiceNotPayable(
                f"{len(ids)} invoices have {field} {number!r} (ids {ids}); "
                "put the invoice id in the payment's metadata"
            )
    raise InvoiceNotFound(ref.describe())


def _check_payable(invoice: Record, invoice_id: int) -> None:
    if invoice.get("Void"):
        raise InvoiceNotPayable(f"invoice {invoice_id} is void")
    if invoice.get("CreditNote"):
        raise InvoiceNotPayable(f"invoice {invoice_id} is a credit note")


def assess_amount(event: PaymentEvent, invoice: Record) -> tuple[str | None, str | None]:
    """(why this payment must not mark the invoice paid, a remark for the record).

    The first is None when it may; the second notes an overpayment.
    """
    invoice_currency = str(invoice.get("CurrencyCode") or "").upper()
    if not invoice_currency:
        return "the invoice has no CurrencyCode to compare with", None
    if event.currency != invoice_currency:
        return (
            f"payment currency {event.currency} differs from the invoice's {invoice_currency}",
            None,
        )
    try:
        total = Decimal(str(invoice.get("TotalAmount") or 0))
        paid = Decimal(str(invoice.get("PaidAmount") or 0))
    except InvalidOperation:
        return "the invoice's TotalAmount or PaidAmount is not a number", None
    outstanding = (total - paid).quantize(Decimal(1).scaleb(-exponent(invoice_currency)))
    if event.amount is None or event.amount < outstanding:
        return (
            f"payment {event.amount} {event.currency} is below the outstanding {outstanding}",
            None,
        )
    if event.amount > outstanding:
        return None, f"overpaid: {event.amount} {event.currency} for {outstanding} outstanding"
    return None, None


def token_notes(event: PaymentEvent, remark: str | None) -> str:
    parts = [f"payhooks: {event.provider} {event.event_type} {event.event_id}"]
    if event.payment_method:
        parts.append(f"method {event.payment_method}")
    if event.amount is not None:
        places = Decimal(1).scaleb(-exponent(event.currency or ""))
        parts.append(f"{event.amount.quantize(places)} {event.currency}")
    for name, value in sorted(event.details.items()):
        if name != "livemode":
            parts.append(f"{name} {value}")
    if event.kind is PaymentKind.PENDING:
        parts.append("payment pending")
    if remark:
        parts.append(remark)
    return "; ".join(parts)


def _ensure_token(
    event: PaymentEvent,
    invoice_id: int,
    known: TokenState,
    nexudus: NexudusClient,
    ledger: Ledger,
    remark: str | None,
) -> tuple[int, bool]:
    if known.token_id is not None:
        return known.token_id, False
    if known.may_exist:
        for record in nexudus.search_payment_tokens(invoice_id, event.token):
            # Listings are partial records: the invoice filter was applied by Nexudus,
            # the token is compared exactly here (its filter matches substrings).
            same_invoice = record.get("CoworkerInvoiceId", invoice_id) == invoice_id
            if record.get("Token") == event.token and same_invoice:
                token_id = int(record["Id"])
                ledger.mark_created(invoice_id, event.token, token_id)
                return token_id, False

    assert event.regular_payment_provider is not None
    ledger.mark_pending(invoice_id, event.token)
    try:
        token_id = nexudus.create_payment_token(
            invoice_id=invoice_id,
            provider=int(event.regular_payment_provider),
            token=event.token,
            notes=token_notes(event, remark),
        )
    except NexudusPermanentError as exc:
        # A 4xx is Nexudus saying no: nothing was written. Anything else (a timeout, a
        # 5xx, a 200 we cannot read) may have written, so the marker stays "pending"
        # and the next attempt searches first.
        if exc.status is not None and 400 <= exc.status < 500:
            ledger.forget(invoice_id, event.token)
            ledger.unbind_payment(event.provider, event.token, invoice_id)
        raise
    ledger.mark_created(invoice_id, event.token, token_id)
    return token_id, True
