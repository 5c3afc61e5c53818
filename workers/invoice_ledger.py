"""The money this service applied to each invoice, in Redis.

The applied payments of an invoice (provider, token -> amount, currency) are its running
total: a payment is added once (HSETNX), whatever how often its events are delivered or
replayed, and the invoice is marked paid when its PaidAmount plus that total covers it.
The same record says which payments settled a paid invoice; any other paid payment for it
is a double payment. A payment is bound to one invoice for good.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal

from redis import Redis

from payhooks.storage import redis_keys
from payhooks.storage.redis_keys import text
from workers.errors import PaymentAlreadyApplied
from workers.markers import MARKER_TTL_SECONDS


@dataclass(frozen=True, slots=True)
class AppliedPayment:
    amount: Decimal
    currency: str


def payment_key(provider: str, token: str) -> str:
    """One payment: provider names hold no ':', so this cannot be mistaken for another."""
    return f"{provider}:{token}"


class InvoiceLedger:
    def __init__(self, redis: Redis) -> None:
        self._redis = redis

    def applied(self, invoice_id: int) -> dict[str, AppliedPayment]:
        """The payments this service counted on the invoice, by ``payment_key``."""
        raw: Mapping[bytes | str, bytes | str] = self._redis.hgetall(
            redis_keys.invoice_applied(invoice_id)
        )
        payments = {}
        for name, value in raw.items():
            data = json.loads(value)
            payments[text(name)] = AppliedPayment(Decimal(data["amount"]), data["currency"])
        return payments

    def uncount(self, invoice_id: int, payment: str) -> None:
        """Take back a payment counted on an invoice that it turned out not to pay."""
        self._redis.hdel(redis_keys.invoice_applied(invoice_id), payment)

    def record_applied(self, invoice_id: int, payment: str, amount: Decimal, currency: str) -> None:
        """Count a payment on the invoice, once: a second call changes nothing."""
        key = redis_keys.invoice_applied(invoice_id)
        value = json.dumps({"amount": str(amount), "currency": currency})
        with self._redis.pipeline() as pipe:
            pipe.hsetnx(key, payment, value)
            pipe.expire(key, MARKER_TTL_SECONDS)
            pipe.execute()

    def bind_payment(self, provider: str, token: str, invoice_id: int) -> None:
        """Tie a payment to one invoice, for good: its events may not name another."""
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
