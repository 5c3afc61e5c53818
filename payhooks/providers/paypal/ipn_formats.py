"""PayPal IPN's form, read the same way by the receiver (to make the event) and by the job
(to confirm with PayPal the very body the event was made from).

Anyone can post an IPN, so its event id names the exact body (``txn_id-status-digest``):
a forgery that copies a genuine payment's ``txn_id`` and status is another event, not a
duplicate, and cannot take the genuine notification's place. PayPal's redelivery of the
same body is still one event; two verified bodies of one payment share the token, which
the money path applies once.
"""

from __future__ import annotations

from datetime import UTC, datetime
from urllib.parse import parse_qsl
from zoneinfo import ZoneInfo

from payhooks.domain.events import (
    Ignored,
    InvoiceRef,
    Normalised,
    PaymentEvent,
    PaymentKind,
    RegularPaymentProvider,
)
from payhooks.domain.messages import UnreadableMessage, body_digest
from payhooks.domain.money import finite_amount

PROVIDER = "paypal-ipn"

KINDS = {
    "Completed": PaymentKind.PAID,
    "Pending": PaymentKind.PENDING,
    "Failed": PaymentKind.FAILED,
    "Denied": PaymentKind.FAILED,
    "Expired": PaymentKind.FAILED,
    "Voided": PaymentKind.FAILED,
    "Refunded": PaymentKind.REFUNDED,
    "Reversed": PaymentKind.REFUNDED,
}
PAYPAL_TIME = ZoneInfo("America/Los_Angeles")  # payment_date is in PayPal's own time
#: Hex digits of the body's SHA-256 in the event id: 128 bits, beyond any forger's reach.


def ipn_fields(body: bytes) -> dict[str, str]:
    """The form, decoded with the charset IPN names in it (often windows-1252)."""
    text = body.decode("ascii", errors="replace")
    charset = dict(parse_qsl(text, encoding="latin-1")).get("charset", "windows-1252")
    try:
        return dict(parse_qsl(text, keep_blank_values=True, encoding=charset, errors="replace"))
    except LookupError:
        return dict(parse_qsl(text, keep_blank_values=True, encoding="windows-1252"))


def ipn_events(body: bytes) -> list[Normalised]:
    """The event an IPN body makes; UnreadableMessage when it names no transaction."""
    fields = ipn_fields(body)
    txn_id, status = fields.get("txn_id", ""), fields.get("payment_status", "")
    subject = f"{txn_id}-{status}" if txn_id else fields.get("ipn_track_id", "")
    event_type = f"ipn.{fields.get('txn_type', 'payment')}.{status or 'none'}"
    if not subject:
        raise UnreadableMessage("IPN without txn_id or ipn_track_id")
    event_id = f"{subject}-{body_digest(body)}"
    kind = KINDS.get(status)
    if kind is None or not txn_id:
        return [Ignored(event_id, event_type, "not a payment status change")]
    invoice = InvoiceRef.from_text(fields.get("invoice") or fields.get("custom") or "")
    if not invoice and kind in (PaymentKind.PAID, PaymentKind.PENDING):
        return [Ignored(event_id, event_type, "no invoice or custom field")]
    amount = finite_amount(fields.get("mc_gross") or None)
    token = txn_id
    if kind is PaymentKind.REFUNDED:
        # A refund or reversal is its own transaction; the payment it undoes is the parent.
        token = fields.get("parent_txn_id", "")
        if not token:
            # Money left; whose payment is unknown: for a person, not acknowledged and lost.
            raise UnreadableMessage(f"IPN {status} without parent_txn_id: the payment is unknown")
    elif kind is PaymentKind.PAID and (amount is None or not fields.get("mc_currency")):
        raise UnreadableMessage("IPN Completed without a readable mc_gross and mc_currency")
    elif amount is not None and amount < 0:
        # Money leaving (a payment we sent, a fee): never a payment to an invoice.
        return [Ignored(event_id, event_type, f"negative mc_gross with status {status}")]
    details = {"subscription": fields["subscr_id"]} if fields.get("subscr_id") else {}
    return [
        PaymentEvent(
            provider=PROVIDER,
            event_id=event_id,
            event_type=event_type,
            kind=kind,
            token=token,
            invoice=invoice,
            # Refunds and reversals carry a negative mc_gross: what left, as a positive sum.
            amount=abs(amount) if amount is not None else None,
            currency=fields.get("mc_currency", "").upper() or None,
            occurred_at=_payment_date(fields.get("payment_date", "")),
            object_id=txn_id,
            regular_payment_provider=RegularPaymentProvider.PAYPAL_STANDARD_SUBSCRIPTION,
            payment_method="paypal",
            details=details,
        )
    ]


def _payment_date(value: str) -> datetime:
    """``10:14:20 Nov 20, 2026 PST`` -> UTC."""
    try:
        local = datetime.strptime(" ".join(value.split()[:4]), "%H:%M:%S %b %d, %Y")
    except ValueError:
        return datetime.fromtimestamp(0, tz=UTC)
    return local.replace(tzinfo=PAYPAL_TIME).astimezone(UTC)
