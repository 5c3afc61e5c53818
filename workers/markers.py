"""Our own record of Nexudus writes, in Redis: per-invoice locks and token markers.

Nexudus has no idempotency keys, so before creating a payment token we would have to
search for it. The marker tells us when that search is needed: it is set to "pending"
before the POST and to the new token's id after it. No marker: we never tried, so no
search. "pending": an earlier attempt may have written (a timeout or a crash after
sending), so search first. An id: the token exists, nothing to do. Then how far the
payment got on the invoice, never going back:
- "<id>:counted": its amount is counted (workers/invoice_ledger.py) but the invoice is
  not settled; every later event of it reads the invoice again, since what else was paid
  (in Nexudus, by an admin) or the total may have changed.
- "<id>:put": a PUT setting PaidOn was sent for it. A PUT whose answer we did not get can
  still land up to NEXUDUS_TIMEOUT_SECONDS later, so PaidOn found on the invoice after this
  may be our own write, not a second payment's.
- "<id>:settled": the invoice was seen paid with this payment counted: a later event of it
  needs no call at all (and a redelivery cannot undo what someone changed in Nexudus since).
"<id>:paid", written by versions before partial payments were told apart, is read as
"counted": such a payment is assessed once more, then marked settled if it is.

The marker is kept in the invoice's money record, beside what the payment was counted at
(workers/invoice_record.py, which also reads the markers older releases kept as keys).
"""

from __future__ import annotations

from dataclasses import dataclass

from redis import Redis
from redis.lock import Lock

from payhooks.storage import redis_keys
from workers.errors import REPLICA_WAIT_SECONDS, InvoiceLockLost, MarkerNotReplicated
from workers.invoice_record import InvoiceRecord, payment_key

PENDING = "pending"
COUNTED = "counted"
PUT_SENT = "put"
SETTLED = "settled"
#: How far a payment got, in order; a marker never moves back.
STAGES = ("", COUNTED, PUT_SENT, SETTLED)
_LEGACY_STAGES = {"paid": COUNTED}
# A marker must outlive every redelivery and replay of the payment's events: providers
# retry for days, failed jobs are kept for weeks. Kept for 400 days.
MARKER_TTL_SECONDS = 400 * 86400


@dataclass(frozen=True, slots=True)
class TokenState:
    token_id: int | None = None
    may_exist: bool = False  # a POST was sent and its outcome is unknown
    stage: str = ""  # one of STAGES

    @property
    def counted(self) -> bool:
        return self.stage != ""

    @property
    def put_sent(self) -> bool:
        return self.stage in (PUT_SENT, SETTLED)

    @property
    def settled(self) -> bool:
        return self.stage == SETTLED

    @classmethod
    def parse(cls, value: str | None) -> TokenState:
        if value is None:
            return cls()
        if value == PENDING:
            return cls(may_exist=True)
        token_id, _, stage = value.partition(":")
        stage = _LEGACY_STAGES.get(stage, stage)
        return cls(token_id=int(token_id), stage=stage if stage in STAGES else COUNTED)


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


LOCK_MARGIN_SECONDS = 5


class Markers:
    """The invoice locks and the token markers of one Redis."""

    def __init__(
        self, redis: Redis, *, lock_seconds: int, ack_replicas: int = 0, ack_timeout_ms: int = 500
    ) -> None:
        self._redis = redis
        self._lock_seconds = lock_seconds
        self._record = InvoiceRecord(redis, ttl_seconds=MARKER_TTL_SECONDS)
        # REDIS_ACK_REPLICAS: a marker written before a Nexudus write must be on that many
        # replicas before the write is sent. Replication is asynchronous: a failover that
        # lost "pending" would let the job's next run POST the token a second time (no
        # marker: no search), one that lost "put" would take our own PaidOn for another
        # payer's.
        self._ack_replicas = ack_replicas
        self._ack_timeout_ms = ack_timeout_ms

    def lock(self, invoice_id: int, *, seconds: int | None = None) -> InvoiceLock:
        """The invoice's lock, held for ``seconds`` (the job's timeout) plus a margin.

        The lock is taken after its job started, so the job's timeout already bounds how
        long it can be needed; the margin only covers clock drift between hosts.
        """
        hold = (seconds or self._lock_seconds) + LOCK_MARGIN_SECONDS
        lock: Lock = self._redis.lock(
            redis_keys.invoice_lock(invoice_id),
            timeout=hold,
            # Well inside the job timeout: better to retry later than to time out.
            blocking_timeout=max(1, min(30, (seconds or self._lock_seconds) // 4)),
        )
        return InvoiceLock(lock, invoice_id)

    def token_state(self, invoice_id: int, provider: str, token: str) -> TokenState:
        entry = self._record.entry(invoice_id, payment_key(provider, token))
        return TokenState.parse(entry.marker)

    def mark_pending(self, invoice_id: int, provider: str, token: str) -> None:
        """Before the token's POST: on REDIS_ACK_REPLICAS replicas, or nothing is sent."""
        self._set_replicated(invoice_id, provider, token, PENDING)

    def mark_created(self, invoice_id: int, provider: str, token: str, token_id: int) -> None:
        self._set_marker(invoice_id, provider, token, str(token_id))

    def advance(
        self, invoice_id: int, provider: str, token: str, token_id: int, stage: str
    ) -> None:
        """Note how far the payment got on the invoice (COUNTED, PUT_SENT, SETTLED); a
        marker already further on is left alone. Called under the invoice's lock."""
        was = self._record.entry(invoice_id, payment_key(provider, token)).marker
        current = TokenState.parse(was)
        moves = STAGES.index(current.stage) < STAGES.index(stage) or current.token_id != token_id
        value = f"{token_id}:{stage}"
        if stage == PUT_SENT and (moves or current.stage == PUT_SENT):
            # Before the PUT: on the replicas, or nothing is sent. A "put" there already
            # may be one whose replicas never answered (a run stopped while waiting):
            # written again and waited for. One that no replica confirmed is set back, as
            # no PUT went: left, it would say one may have landed (a PaidOn someone else
            # set taken for ours) and spare the next run the wait.
            try:
                self._set_replicated(invoice_id, provider, token, value)
            except MarkerNotReplicated:
                if moves:
                    self._record.set_marker(invoice_id, payment_key(provider, token), was)
                raise
        elif moves:
            self._set_marker(invoice_id, provider, token, value)

    def reset(self, invoice_id: int, provider: str, token: str, token_id: int, stage: str) -> None:
        """Set the stage back: a PUT marked as sent turned out never to have gone."""
        self._set_marker(invoice_id, provider, token, f"{token_id}:{stage}")

    def _set_marker(self, invoice_id: int, provider: str, token: str, value: str) -> None:
        self._record.set_marker(invoice_id, payment_key(provider, token), value)

    def _set_replicated(self, invoice_id: int, provider: str, token: str, value: str) -> None:
        if not self._ack_replicas:
            self._set_marker(invoice_id, provider, token, value)
            return
        held = self._record.set_marker(
            invoice_id,
            payment_key(provider, token),
            value,
            replicas=self._ack_replicas,
            timeout_ms=self._ack_timeout_ms,
        )
        if held < self._ack_replicas:
            raise MarkerNotReplicated(
                f"the marker of invoice {invoice_id}'s payment reached {held} of "
                f"{self._ack_replicas} replicas within {self._ack_timeout_ms} ms "
                "(REDIS_ACK_REPLICAS); nothing was sent to Nexudus, the job will run again",
                retry_after=REPLICA_WAIT_SECONDS,
            )

    def forget(self, invoice_id: int, provider: str, token: str) -> None:
        """The POST was refused, so nothing was written."""
        self._record.set_marker(invoice_id, payment_key(provider, token), None)
