"""Our own record of Nexudus writes, in Redis: per-invoice locks and token markers.

Nexudus has no idempotency keys, so before creating a payment token we would have to
search for it. The marker tells us when that search is needed: it is set to "pending"
before the POST and to the new token's id after it. No marker: we never tried, so no
search. "pending": an earlier attempt may have written (a timeout or a crash after
sending), so search first. An id: the token exists, nothing to do. "<id>:paid": the
invoice was also seen paid, so a later event of the same payment needs no call at all
(and a redelivery cannot undo what someone changed in Nexudus since).
"""

from __future__ import annotations

from dataclasses import dataclass

from redis import Redis
from redis.lock import Lock

from payhooks import keys
from payhooks.keys import text
from workers.errors import PaymentAlreadyApplied

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


class Ledger:
    def __init__(self, redis: Redis, *, lock_seconds: int) -> None:
        self._redis = redis
        self._lock_seconds = lock_seconds

    def lock(self, invoice_id: int) -> Lock:
        """Serialise all work on one invoice across workers (one token, one PUT)."""
        lock: Lock = self._redis.lock(
            keys.invoice_lock(invoice_id),
            timeout=self._lock_seconds,
            # Well inside the job timeout: better to retry later than to time out.
            blocking_timeout=min(30, self._lock_seconds // 4),
        )
        return lock

    def token_state(self, invoice_id: int, token: str) -> TokenState:
        value = self._redis.get(keys.token_marker(invoice_id, token))
        return TokenState.parse(None if value is None else text(value))

    def mark_pending(self, invoice_id: int, token: str) -> None:
        self._redis.set(keys.token_marker(invoice_id, token), PENDING, ex=MARKER_TTL_SECONDS)

    def mark_created(self, invoice_id: int, token: str, token_id: int) -> None:
        self._redis.set(keys.token_marker(invoice_id, token), str(token_id), ex=MARKER_TTL_SECONDS)

    def mark_paid(self, invoice_id: int, token: str, token_id: int) -> None:
        self._redis.set(
            keys.token_marker(invoice_id, token), f"{token_id}:paid", ex=MARKER_TTL_SECONDS
        )

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

    def forget(self, invoice_id: int, token: str) -> None:
        """The POST was refused, so nothing was written."""
        self._redis.delete(keys.token_marker(invoice_id, token))
