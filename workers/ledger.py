"""Our own record of Nexudus writes, in Redis: per-invoice locks, token markers, and the
money this service applied to each invoice.

Nexudus has no idempotency keys, so before creating a payment token we would have to
search for it. The marker tells us when that search is needed: it is set to "pending"
before the POST and to the new token's id after it. No marker: we never tried, so no
search. "pending": an earlier attempt may have written (a timeout or a crash after
sending), so search first. An id: the token exists, nothing to do. "<id>:paid": the
invoice was also seen paid, so a later event of the same payment needs no call at all
(and a redelivery cannot undo what someone changed in Nexudus since); since partial
payments, it means "this payment's amount is counted on the invoice".

The applied payments of an invoice (provider, token -> amount, currency) are its running
total: a payment is added once (HSETNX), whatever how often its events are delivered or
replayed, and the invoice is marked paid when its PaidAmount plus that total covers it.
The same record says which payments settled a paid invoice; any other paid payment for it
is a double payment.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal

from redis import Redis
from redis.lock import Lock

from payhooks import keys
from payhooks.keys import text
from workers.errors import InvoiceLockLost, PaymentAlreadyApplied

PENDING = "pending"
# A marker must outlive every redelivery and replay of the payment's events: providers
# retry for days, failed jobs are kept for weeks. Kept for 400 days.
MARKER_TTL_SECONDS = 400 * 86400


@dataclass(frozen=True, slots=True)
class TokenState:
    token_id: int | None = None
    may_exist: bool = False  # a POST was sent and its outcome is unknown
    invoice_paid: bool = False

    @classmethod
    def parse(cls, value: str | None) -> TokenState:
        if value is None:
            return cls()
        if value == PENDING:
            return cls(may_exist=True)
        token_id, _, paid = value.partition(":")
        return cls(token_id=int(token_id), invoice_paid=paid == "paid")


@dataclass(frozen=True, slots=True)
class AppliedPayment:
    amount: Decimal
    currency: str


def payment_key(provider: str, token: str) -> str:
    """One payment: provider names hold no ':', so this cannot be mistaken for another."""
    return f"{provider}:{token}"


class InvoiceLock:
    """Serialises all work on one invoice across workers (one token, one PUT).

    It lasts as long as the job holding it may run (the job's own timeout, written by
    whoever queued it), so it cannot expire under a job that is still working; and
    ``before_write`` refuses a write if it expired all the same (a paused process).
    """

    def __init__(self, lock: Lock, invoice_id: int) -> None:
        self._lock = lock
        self.invoice_id = invoice_id

    def acquire(self) -> bool:
        return bool(self._lock.acquire())

    def before_write(self) -> None:
        if not self._lock.owned():
            raise InvoiceLockLost(
                f"the lock on invoice {self.invoice_id} expired before a write; nothing was "
                "written, the job will run again"
            )

    def release(self) -> None:
        self._lock.release()


class Ledger:
    def __init__(self, redis: Redis, *, lock_seconds: int) -> None:
        self._redis = redis
        self._lock_seconds = lock_seconds

    def lock(self, invoice_id: int, *, seconds: int | None = None) -> InvoiceLock:
        """The invoice's lock, held for ``seconds`` (the job's timeout) plus a margin."""
        hold = (seconds or self._lock_seconds) + 30
        lock: Lock = self._redis.lock(
            keys.invoice_lock(invoice_id),
            timeout=hold,
            # Well inside the job timeout: better to retry later than to time out.
            blocking_timeout=max(1, min(30, (seconds or self._lock_seconds) // 4)),
        )
        return InvoiceLock(lock, invoice_id)

    def applied(self, invoice_id: int) -> dict[str, AppliedPayment]:
        """The payments this service counted on the invoice, by ``payment_key``."""
        raw: Mapping[bytes | str, bytes | str] = self._redis.hgetall(
            keys.invoice_applied(invoice_id)
        )
        payments = {}
        for name, value in raw.items():
            data = json.loads(value)
            payments[text(name)] = AppliedPayment(Decimal(data["amount"]), data["currency"])
        return payments

    def uncount(self, invoice_id: int, payment: str) -> None:
        """Take back a payment counted on an invoice that it turned out not to pay."""
        self._redis.hdel(keys.invoice_applied(invoice_id), payment)

    def record_applied(self, invoice_id: int, payment: str, amount: Decimal, currency: str) -> None:
        """Count a payment on the invoice, once: a second call changes nothing."""
        key = keys.invoice_applied(invoice_id)
        value = json.dumps({"amount": str(amount), "currency": currency})
        with self._redis.pipeline() as pipe:
            pipe.hsetnx(key, payment, value)
            pipe.expire(key, MARKER_TTL_SECONDS)
            pipe.execute()

    def token_state(self, invoice_id: int, provider: str, token: str) -> TokenState:
        current, legacy = self._redis.mget(
            keys.token_marker(invoice_id, provider, token),
            keys.legacy_token_marker(invoice_id, token),
        )
        value = current if current is not None else legacy
        return TokenState.parse(None if value is None else text(value))

    def mark_pending(self, invoice_id: int, provider: str, token: str) -> None:
        self._set_marker(invoice_id, provider, token, PENDING)

    def mark_created(self, invoice_id: int, provider: str, token: str, token_id: int) -> None:
        self._set_marker(invoice_id, provider, token, str(token_id))

    def mark_paid(self, invoice_id: int, provider: str, token: str, token_id: int) -> None:
        """The payment is counted on the invoice: later events of it need no call."""
        self._set_marker(invoice_id, provider, token, f"{token_id}:paid")

    def _set_marker(self, invoice_id: int, provider: str, token: str, value: str) -> None:
        key = keys.token_marker(invoice_id, provider, token)
        self._redis.set(key, value, ex=MARKER_TTL_SECONDS)

    def bind_payment(self, provider: str, token: str, invoice_id: int) -> None:
        """Tie a payment to one invoice, for good: its events may not name another."""
        key = keys.payment_binding(provider, token)
        if self._redis.set(key, str(invoice_id), nx=True, ex=MARKER_TTL_SECONDS):
            return
        bound = self._redis.get(key)
        if bound is not None and int(text(bound)) != invoice_id:
            raise PaymentAlreadyApplied(token, int(text(bound)), invoice_id)

    def unbind_payment(self, provider: str, token: str, invoice_id: int) -> None:
        key = keys.payment_binding(provider, token)
        bound = self._redis.get(key)
        if bound is not None and int(text(bound)) == invoice_id:
            self._redis.delete(key)

    def forget(self, invoice_id: int, provider: str, token: str) -> None:
        """The POST was refused, so nothing was written."""
        self._redis.delete(
            keys.token_marker(invoice_id, provider, token),
            keys.legacy_token_marker(invoice_id, token),
        )
