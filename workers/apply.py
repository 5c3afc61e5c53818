"""Apply one payment event to Nexudus, idempotently.

Paid: find the invoice, record the payment token unless it is there already, and set
PaidOn on the full record when the money settles it. Pending: the token only. Failed
and refunded: nothing is written (PaidOn is never cleared); the outcome is logged.

Calls per newly paid payment whose event carries the invoice id: GET invoice, POST
token, PUT invoice. The token search happens only when an earlier attempt may have
written (see workers/ledger.py).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import UTC
from decimal import Decimal, InvalidOperation
from typing import Any

from redis.exceptions import LockError

from payhooks.events import InvoiceRef, PaymentEvent, PaymentKind
from payhooks.money import exponent
from workers.errors import AmountMismatch, InvoiceNotFound, InvoiceNotPayable, TransientError
from workers.ledger import Ledger, TokenState
from workers.nexudus import NexudusClient, Record


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
    try:
        with ledger.lock(invoice_id):
            return _apply_locked(event, invoice_id, nexudus, ledger)
    except LockError:
        raise TransientError(f"invoice {invoice_id} is locked by another job") from None


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

    blocker = None
    if event.kind is PaymentKind.PAID and not already_paid:
        blocker = amount_blocker(event, invoice)
    token_id, created = _ensure_token(event, invoice_id, known, nexudus, ledger, blocker)

    if event.kind is PaymentKind.PENDING:
        return Outcome("token_only", invoice_id, token_id, created, note="payment pending")
    if already_paid:
        ledger.mark_paid(invoice_id, event.token, token_id)
        return Outcome("already_applied", invoice_id, token_id, created, note="PaidOn already set")
    if blocker is not None:
        raise AmountMismatch(invoice_id, blocker)

    # PUT replaces the whole record: send back everything GET gave, changing only PaidOn.
    paid_on = event.occurred_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    nexudus.put_invoice({**invoice, "PaidOn": paid_on})
    ledger.mark_paid(invoice_id, event.token, token_id)
    return Outcome("applied", invoice_id, token_id, created, paid_on_set=True)


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


def amount_blocker(event: PaymentEvent, invoice: Record) -> str | None:
    """Why this payment must not mark the invoice paid, or None when it may."""
    invoice_currency = str(invoice.get("CurrencyCode") or "").upper()
    if not invoice_currency:
        return "the invoice has no CurrencyCode to compare with"
    if event.currency != invoice_currency:
        return f"payment currency {event.currency} differs from the invoice's {invoice_currency}"
    try:
        total = Decimal(str(invoice.get("TotalAmount") or 0))
        paid = Decimal(str(invoice.get("PaidAmount") or 0))
    except InvalidOperation:
        return "the invoice's TotalAmount or PaidAmount is not a number"
    outstanding = (total - paid).quantize(Decimal(1).scaleb(-exponent(invoice_currency)))
    if event.amount is None or event.amount < outstanding:
        return f"payment {event.amount} {event.currency} is below the outstanding {outstanding}"
    return None


def token_notes(event: PaymentEvent, blocker: str | None) -> str:
    parts = [f"payhooks: {event.provider} {event.event_type} {event.event_id}"]
    if event.payment_method:
        parts.append(f"method {event.payment_method}")
    if event.amount is not None:
        parts.append(f"{event.amount} {event.currency}")
    for name, value in sorted(event.details.items()):
        if name != "livemode":
            parts.append(f"{name} {value}")
    if event.kind is PaymentKind.PENDING:
        parts.append("payment pending")
    if blocker:
        parts.append(f"NOT marked paid: {blocker}")
    return "; ".join(parts)


def _ensure_token(
    event: PaymentEvent,
    invoice_id: int,
    known: TokenState,
    nexudus: NexudusClient,
    ledger: Ledger,
    blocker: str | None,
) -> tuple[int, bool]:
    if known.token_id is not None:
        return known.token_id, False
    if known.may_exist:
        for record in nexudus.search_payment_tokens(invoice_id, event.token):
            if record.get("Token") == event.token and record.get("CoworkerInvoiceId") == invoice_id:
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
            notes=token_notes(event, blocker),
        )
    except TransientError:
        raise  # the POST may have landed: the marker stays "pending"
    except Exception:
        ledger.forget(invoice_id, event.token)
        raise
    ledger.mark_created(invoice_id, event.token, token_id)
    return token_id, True
