"""Paid events not yet applied: the business outcome, not just the transport.

A paid event enters a sorted set (``payhooks:unapplied``) as it is handed off (by the
record-once script, whichever door brought it: a webhook, a poll, a reconcile scan),
scored by when the provider says it was paid (or, when its hand-off could only hint that
it was pending, as Forte's webhooks do, once its job has read it paid: ``entered``), and
leaves it when its job ends: applied,
counted, found none of ours, or failed for a person (the failed-job registry and its
alert take it from there). A job retrying stays in it. So how many members are older than
30 minutes is how many payments were paid that long ago and are still not in Nexudus,
read in one ZCOUNT (``payhooks_unapplied_payments``); a payment no door ever brought is
found by the scheduled reconcile, which hands it off with its own paid time, so it counts
at once. Only events in flight are held (45 bytes each up to 128, about 116 in a backlog); members older than the
trail's retention are dropped as jobs end, in case a job vanished without ending.
"""

from __future__ import annotations

import time

from redis import Redis

from payhooks.domain.events import PaymentEvent, PaymentKind
from payhooks.storage import redis_keys

#: Paid this long ago and not applied: overdue (the gauge, the audit, the alert).
OVERDUE_AFTER_SECONDS = 1800


def score(event: PaymentEvent, *, ttl_seconds: int, now: float | None = None) -> str:
    """Its score in the set ('' for an event that is not a payment made): when it was
    paid, or now when its date is not plausible (ahead of us, or older than we keep)."""
    if event.kind is not PaymentKind.PAID:
        return ""
    now = time.time() if now is None else now
    paid = event.occurred_at.timestamp()
    return f"{paid if now - ttl_seconds < paid <= now else now:.0f}"


def entered(redis: Redis, event: PaymentEvent, *, ttl_seconds: int) -> None:
    """A payment its hand-off could not know was paid (its webhook only hinted: Forte's
    names neither card nor eCheck, so its ``ready`` is pending until the job reads the
    sale) enters once its job has read it paid; it leaves as its job ends, as any other."""
    paid = score(event, ttl_seconds=ttl_seconds)
    if paid:
        redis.zadd(redis_keys.UNAPPLIED, {event.key: float(paid)}, nx=True)


def ended(redis: Redis, event_key: str, *, ttl_seconds: int, now: float | None = None) -> None:
    """The event's job ended: it is no longer waiting to be applied."""
    now = time.time() if now is None else now
    with redis.pipeline(transaction=False) as pipe:
        pipe.zrem(redis_keys.UNAPPLIED, event_key)
        pipe.zremrangebyscore(redis_keys.UNAPPLIED, "-inf", now - ttl_seconds)
        pipe.execute()


def overdue_before(now: float | None = None) -> float:
    """The score below which a member is overdue: ZCOUNT up to it is the gauge."""
    return (time.time() if now is None else now) - OVERDUE_AFTER_SECONDS
