"""The money this service applied to each invoice, in Redis.

The applied payments of an invoice (provider, token -> amount, currency) are its running
total, kept in the invoice's money record (workers/invoice_record.py): a payment is added
once, whatever how often its events are delivered or replayed, and the invoice is marked paid when its PaidAmount plus that total covers it.
Money that went back (workers/reversals.py) is taken off as the total is read: a payment
refunded in full no longer counts, nor names itself a payer of the invoice. The same
record says which payments settled a paid invoice; any other paid payment for it is a
double payment.

A payment is tied to one invoice while its job works on it, and stays tied once it was
counted there: its events may not name another. A job that refuses the payment (another
currency, a paid or void invoice) unties it, so that a corrected match can apply it.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from redis import Redis

from payhooks.storage import redis_keys
from payhooks.storage.redis_keys import text
from workers.errors import PaymentAlreadyApplied
from workers.invoice_record import InvoiceRecord, payment_key
from workers.markers import MARKER_TTL_SECONDS
from workers.reversals import Reversals

__all__ = ["AppliedPayment", "InvoiceLedger", "payment_key"]


@dataclass(frozen=True, slots=True)
class AppliedPayment:
    #: What still counts: the amount applied less what went back.
    amount: Decimal
    currency: str
    reversed: Decimal = Decimal(0)


class InvoiceLedger:
    def __init__(self, redis: Redis) -> None:
        self._redis = redis
        self._record = InvoiceRecord(redis, ttl_seconds=MARKER_TTL_SECONDS)
        self.reversals = Reversals(redis)

    def applied(self, invoice_id: int) -> dict[str, AppliedPayment]:
        """The payments this service counted on the invoice, by ``payment_key``."""
        counted = self._record.counted(invoice_id)
        reversals = self.reversals.of_payments(
            (provider, token) for provider, _, token in (n.partition(":") for n in counted)
        )
        payments = {}
        for name, (amount, currency) in counted.items():
            provider, _, token = name.partition(":")
            undone = reversals.get((provider, token))
            net = amount if undone is None else undone.net(amount, currency)
            if net > 0:
                payments[name] = AppliedPayment(net, currency, amount - net)
        return payments

    def counts(self, invoice_id: int, payment: str) -> bool:
        """Whether the payment was counted on the invoice (refunded or not)."""
        return self._record.entry(invoice_id, payment).amount is not None

    def counted(self, invoice_id: int, payment: str) -> AppliedPayment | None:
        """What the payment was counted at on the invoice, before anything went back."""
        entry = self._record.entry(invoice_id, payment)
        if entry.amount is None or entry.currency is None:
            return None
        return AppliedPayment(entry.amount, entry.currency)

    def bound_invoice(self, provider: str, token: str) -> int | None:
        bound = self._redis.get(redis_keys.payment_binding(provider, token))
        return None if bound is None else int(text(bound))

    def uncount(self, invoice_id: int, payment: str) -> None:
        """Take back a payment counted on an invoice that it turned out not to pay."""
        self._record.uncount(invoice_id, payment)

    def record_applied(self, invoice_id: int, payment: str, amount: Decimal, currency: str) -> None:
        """Count a payment on the invoice, once: a second call changes nothing."""
        self._record.count(invoice_id, payment, amount, currency)

    def bind_payment(self, provider: str, token: str, invoice_id: int) -> None:
        """Tie a payment to one invoice: its events may not name another while it is."""
        key = redis_keys.payment_binding(provider, token)
        if self._redis.set(key, str(invoice_id), nx=True, ex=MARKER_TTL_SECONDS):
            return
        bound = self._redis.get(key)
        if bound is not None and int(text(bound)) != invoice_id:
            raise PaymentAlreadyApplied(token, int(text(bound)), invoice_id)

    def unbind_payment(self, provider: str, token: str, invoice_id: int) -> None:
        key = redis_keys.payment_binding(provider, token)
        bound = self._redis.get(key)
        if bound is not None and int(text(bound)) == invoice_id:
            self._redis.delete(key)
