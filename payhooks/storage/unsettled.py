"""What a reconcile scan must read again: records its provider may still change after every
window listing them has passed (a Braintree refund, listed by when it was made, voided or
declined days later), per provider, by id.

A sorted set per provider (``payhooks:unsettled:<provider>``), each id scored by when it
was first remembered (Unix ms). Small and bounded: an id is forgotten once its record is
final (settled, voided, declined), once it is older than the retention (the events a
late change would act on are gone by then), and, past ``MAX_REMEMBERED``, oldest first
(logged: such a record is back to what a scan of its window alone would find).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable

from redis import Redis

from payhooks.storage import redis_keys
from payhooks.storage.redis_keys import text

log = logging.getLogger("payhooks.reconcile")

#: The most ids kept per provider: each scan reads them all again (Braintree: two search
#: calls per 50), so 1,000 cost a scan at most 40 calls.
MAX_REMEMBERED = 1_000


class Unsettled:
    def __init__(
        self, redis: Redis, provider: str, *, ttl_seconds: int, most: int = MAX_REMEMBERED
    ) -> None:
        self._redis = redis
        self._provider = provider
        self._key = redis_keys.unsettled(provider)
        self._ttl = ttl_seconds
        self._most = most

    def note(self, still_open: Iterable[str], final: Iterable[str]) -> int:
        """Keep the ids ``still_open`` (one kept already keeps its first time), within the
        bounds, and forget those ``final``; the round trips it took (1, or 2 when the
        bound dropped some)."""
        now = time.time_ns() // 1_000_000
        wanted = dict.fromkeys(still_open, now)
        gone = [record_id for record_id in final if record_id not in wanted]
        with self._redis.pipeline(transaction=True) as pipe:
            if gone:
                pipe.zrem(self._key, *gone)
            if wanted:
                pipe.zadd(self._key, wanted, nx=True)
                pipe.expire(self._key, self._ttl)
            pipe.zremrangebyscore(self._key, "-inf", now - self._ttl * 1000)
            pipe.zcard(self._key)
            count = pipe.execute()[-1]
        if count <= self._most:
            return 1
        dropped = self._redis.zpopmin(self._key, count - self._most)
        log.warning(
            "reconcile.unsettled_dropped",
            extra={"provider": self._provider, "dropped": len(dropped), "kept": self._most},
        )
        return 2

    def ids(self) -> list[str]:
        """Oldest first, without those past the retention."""
        now = time.time_ns() // 1_000_000
        with self._redis.pipeline(transaction=True) as pipe:
            pipe.zremrangebyscore(self._key, "-inf", now - self._ttl * 1000)
            pipe.zrange(self._key, 0, -1)
            _, members = pipe.execute()
        return [text(m) for m in members]
