"""A rate limiter shared by every worker process, kept in Redis.

Nexudus allows 60 writes a minute and 5,000 a day, 120 calls a minute, and one call
per 100 ms (reference/api-limitations). Each limit is a sliding-window log (a sorted
set of call times); a call proceeds only when every window it belongs to has room,
and the check-and-record is one Lua script, so two workers cannot both take the last
slot. Time is Redis's own clock, so workers on different hosts agree.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

from redis import Redis

from payhooks import keys
from payhooks.settings import Settings
from workers.errors import TransientError

log = logging.getLogger("payhooks.ratelimit")

#: Waits up to this long are slept in place (a minute window frees within 60 s).
MAX_INLINE_WAIT_MS = 61_000


class RateLimited(TransientError):
    """Our own limiter says Nexudus's budget is spent for longer than a job should wait."""


# KEYS: bucket keys. ARGV[1]: unique member; then limit, window_ms per bucket.
# Returns 0 when the call was recorded, else the milliseconds to wait.
_ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local wait = 0
for i, key in ipairs(KEYS) do
    local limit = tonumber(ARGV[2 * i])
    local window = tonumber(ARGV[2 * i + 1])
    redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
    if redis.call('ZCARD', key) >= limit then
        local oldest = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
        local free_at = tonumber(oldest[2]) + window - now
        if free_at > wait then wait = free_at end
    end
end
if wait > 0 then return wait end
for i, key in ipairs(KEYS) do
    redis.call('ZADD', key, now, ARGV[1])
    redis.call('PEXPIRE', key, tonumber(ARGV[2 * i + 1]))
end
return 0
"""


@dataclass(frozen=True, slots=True)
class Window:
    name: str
    limit: int
    window_ms: int


class RateLimiter:
    def __init__(
        self,
        redis: Redis,
        *,
        calls: list[Window],
        writes: list[Window],
        sleep: Callable[[float], None] = time.sleep,
        on_wait: Callable[[float], None] | None = None,
    ) -> None:
        self._on_wait = on_wait
        self._script = redis.register_script(_ACQUIRE)
        self._calls = calls
        self._writes = calls + writes
        self._sleep = sleep
        self.waited_seconds = 0.0

    @classmethod
    def for_nexudus(
        cls, redis: Redis, settings: Settings, on_wait: Callable[[float], None] | None = None
    ) -> RateLimiter:
        calls = [Window("calls-minute", settings.nexudus_calls_per_minute, 60_000)]
        if settings.nexudus_min_interval_ms > 0:
            calls.append(Window("calls-interval", 1, settings.nexudus_min_interval_ms))
        writes = [
            Window("writes-minute", settings.nexudus_writes_per_minute, 60_000),
            Window("writes-day", settings.nexudus_writes_per_day, 86_400_000),
        ]
        return cls(redis, calls=calls, writes=writes, on_wait=on_wait)

    def acquire(self, *, write: bool) -> None:
        """Block until this call fits every window, then record it."""
        windows = self._writes if write else self._calls
        bucket_keys = [keys.rate_bucket(w.name) for w in windows]
        args: list[str | int] = [secrets.token_hex(8)]
        for window in windows:
            args.extend((window.limit, window.window_ms))
        while True:
            wait_ms = int(self._script(keys=bucket_keys, args=args))
            if wait_ms <= 0:
                return
            if wait_ms > MAX_INLINE_WAIT_MS:
                # A full daily budget, say: give the worker back and retry later.
                raise RateLimited(
                    f"Nexudus {'write' if write else 'call'} budget spent for "
                    f"{wait_ms / 1000:.0f} s",
                    retry_after=wait_ms / 1000,
                )
            if wait_ms > 1000:
                log.info("nexudus.rate_limit_wait", extra={"wait_ms": wait_ms, "write": write})
            self.waited_seconds += wait_ms / 1000
            if self._on_wait is not None:
                self._on_wait(wait_ms / 1000)
            self._sleep(wait_ms / 1000)
