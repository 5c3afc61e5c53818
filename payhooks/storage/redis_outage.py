"""Riding through a time without Redis: a Sentinel election, a primary restarting.

Sentinel notices a dead primary only after its ``down-after-milliseconds`` (30 s by
default), then elects and promotes a replica: for that long there is no primary to reach.
A worker that exited at once would be restarted by its supervisor, fail again, and be held
back by Kubernetes' CrashLoopBackOff well after Redis is back. So the worker waits here,
asking again with backoff (each attempt a new connection, so through the Sentinels to
whichever primary they name now), and gives up only when Redis stays unreachable for
``WORKER_REDIS_PATIENCE_SECONDS``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from redis.exceptions import RedisError

log = logging.getLogger("payhooks.worker")

FIRST_WAIT_SECONDS = 0.5
LONGEST_WAIT_SECONDS = 5.0


def wait_for_redis(
    ping: Callable[[], object],
    *,
    patience_seconds: float,
    stop: Callable[[], bool] = lambda: False,
    sleep: Callable[[float], None] = time.sleep,
) -> bool:
    """Until ``ping`` succeeds (True), ``patience_seconds`` pass or ``stop`` says so (False)."""
    deadline = time.monotonic() + patience_seconds
    wait = FIRST_WAIT_SECONDS
    attempts = 0
    while not stop():
        attempts += 1
        try:
            ping()
        except RedisError as exc:
            left = deadline - time.monotonic()
            if left <= 0:
                log.error(
                    "worker.redis_unreachable",
                    extra={"attempts": attempts, "error": exc.__class__.__name__},
                )
                return False
            sleep(min(wait, left))
            wait = min(wait * 2, LONGEST_WAIT_SECONDS)
            continue
        log.warning("worker.redis_back", extra={"attempts": attempts})
        return True
    return False
