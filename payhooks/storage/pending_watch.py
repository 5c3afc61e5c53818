"""The records reconciliation listed still open, kept so that later scans read each back
by id until it is final: one sorted set per provider (``payhooks:reconcile:<provider>:
pending``), for every lister that ``FollowsPending`` (payhooks/providers/kit/listing.py).

A provider whose list is ordered by creation time never lists again a record created
before a scan's window: a Spreedly purchase left pending for days (offsite, 3-D Secure,
ACH) that succeeds after every window has passed it, or a Braintree refund voided days
after it was made, would be found by nothing. Its id is kept here instead, scored by its
creation time (Unix seconds): each later scan reads back those it did not list itself,
records them as its listed records are, and forgets one only once it is final and that
is done, so a scan that fails in between loses nothing.

Bounded twice, and neither bound is silent (giving up on an open record can lose money
either way): an id older than the watch's age is given up (``due`` returns it, the
caller counts, logs and forgets it, and an alert sees the count), and the set holds at
most ``cap`` ids (the oldest go first, returned to be counted and logged the same way).
The set's own TTL is twice the age from its last addition: a provider no longer scanned
leaves nothing behind, and one scanned again after a pause gives up what aged meanwhile
out loud, not by expiry.
"""

from __future__ import annotations

from collections.abc import Sequence

from redis import Redis

from payhooks.storage import redis_keys


class PendingWatch:
    """One provider's watched ids; ``round_trips`` counts the Redis round trips made."""

    def __init__(self, redis: Redis, provider: str, *, max_age_seconds: int, cap: int) -> None:
        self._redis = redis
        self._key = redis_keys.reconcile_pending(provider)
        self._max_age = max_age_seconds
        self._cap = cap
        self.round_trips = 0

    def too_old(self, pending: Sequence[tuple[str, float]], *, now: float) -> list[str]:
        """The ids of these (id, creation time) pairs that ``remember`` would not watch,
        being older than the watch's age already: the caller gives them up out loud."""
        return [tid for tid, created in pending if created <= now - self._max_age]

    def remember(self, pending: Sequence[tuple[str, float]], *, now: float) -> list[str]:
        """Watch these (id, creation time) pairs, but for those already too old
        (``too_old``); an id watched before keeps its place. The ids dropped to keep the
        cap, oldest first."""
        young = {tid: created for tid, created in pending if created > now - self._max_age}
        if not young:
            return []
        with self._redis.pipeline(transaction=False) as pipe:
            pipe.zadd(self._key, young, nx=True)
            pipe.expire(self._key, 2 * self._max_age)
            pipe.zcard(self._key)
            *_, watched = pipe.execute()
        self.round_trips += 1
        if int(watched) <= self._cap:
            return []
        self.round_trips += 1
        popped: list[tuple[bytes, float]] = self._redis.zpopmin(  # type: ignore[assignment]
            self._key, int(watched) - self._cap
        )
        return [redis_keys.text(tid) for tid, _ in popped]

    def due(self, *, now: float) -> tuple[list[str], list[str]]:
        """The ids to read back, oldest first, and those too old to watch any longer (not
        forgotten yet: ``forget`` them once counted)."""
        oldest = now - self._max_age
        with self._redis.pipeline(transaction=False) as pipe:
            pipe.zrangebyscore(self._key, "-inf", oldest)
            pipe.zrangebyscore(self._key, f"({oldest}", "+inf")
            aged, due = pipe.execute()
        self.round_trips += 1
        return [redis_keys.text(t) for t in due], [redis_keys.text(t) for t in aged]

    def forget(self, ids: Sequence[str]) -> None:
        if ids:
            self.round_trips += 1
            self._redis.zrem(self._key, *ids)

    def watched(self) -> list[str]:
        """Every id watched, oldest first."""
        ids: list[bytes] = self._redis.zrange(self._key, 0, -1)  # type: ignore[assignment]
        return [redis_keys.text(t) for t in ids]
