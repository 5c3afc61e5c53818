"""A rate limiter shared by every worker process, kept in Redis.

Nexudus allows 60 writes a minute and 5,000 a day, 120 calls a minute, and one call
per 100 ms (reference/api-limitations). Each count limit is a sliding-window log (a
sorted set of call times) and the spacing is the time of the next free slot; a call
proceeds only when every limit it belongs to has room, and the check-and-record is one
Lua script, so two workers cannot both take the last slot. Time is Redis's own clock,
so workers on different hosts agree.

Slots can be reserved several at a time (a GET, its POST and its PUT): they are
scheduled one spacing apart, so a job that reserved them runs its calls back to back
without waiting in between (a PUT must carry the record as it stood right before it).

Nexudus counts a call when it arrives; we count it when its slot is taken, a little
earlier. Each count window is therefore ``margin`` longer than Nexudus's, and a slot not
used within ``margin`` of its time is given back rather than used late.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from redis import Redis

from payhooks.settings import Settings
from payhooks.storage import redis_keys
from workers.errors import TransientError

log = logging.getLogger("payhooks.ratelimit")

#: Waits up to this long are slept in place (a minute window, margin included, frees
#: within this).
MAX_INLINE_WAIT_MS = 66_000


class RateLimited(TransientError):
    """Our own limiter says Nexudus's budget is spent for longer than a job should wait."""


# KEYS[1]: the spacing key (time of the next free slot); KEYS[2..]: window logs.
# ARGV: member, slot kinds ('0' read, '1' write, one per slot), spacing ms,
#       then per window: limit, window ms, applies to ('a' every call, 'w' writes).
# Returns {0, offset ms of each slot} when recorded, else {wait ms}.
_RESERVE = """
local member, kinds, spacing = ARGV[1], ARGV[2], tonumber(ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local n = string.len(kinds)
local writes = select(2, string.gsub(kinds, '1', ''))
local wait = 0
local function window(w)
    local base = 3 + (w - 2) * 3
    return tonumber(ARGV[base + 1]), tonumber(ARGV[base + 2]), ARGV[base + 3]
end
for w = 2, #KEYS do
    local limit, span, applies = window(w)
    local need = n
    if applies == 'w' then need = writes end
    if need > 0 then
        redis.call('ZREMRANGEBYSCORE', KEYS[w], '-inf', now - span)
        local over = redis.call('ZCARD', KEYS[w]) + need - limit
        if over > 0 then
            local entry = redis.call('ZRANGE', KEYS[w], over - 1, over - 1, 'WITHSCORES')
            local free_at = tonumber(entry[2]) + span - now
            if free_at > wait then wait = free_at end
        end
    end
end
local next_free = tonumber(redis.call('GET', KEYS[1]) or '0')
if next_free - now > wait then wait = next_free - now end
if wait > 0 then return {wait} end
local offsets = {0}
for i = 1, n do
    local at = now + (i - 1) * spacing
    local is_write = string.sub(kinds, i, i) == '1'
    for w = 2, #KEYS do
        local _, span, applies = window(w)
        if applies == 'a' or is_write then
            redis.call('ZADD', KEYS[w], at, member .. ':' .. i)
            redis.call('PEXPIRE', KEYS[w], span + n * spacing)
        end
    end
    offsets[i + 1] = (i - 1) * spacing
end
if spacing > 0 then
    redis.call('SET', KEYS[1], now + n * spacing, 'PX', n * spacing)
end
return offsets
"""


@dataclass(frozen=True, slots=True)
class Window:
    name: str
    limit: int
    window_ms: int
    writes_only: bool = False


@dataclass(frozen=True, slots=True)
class Slot:
    """A reserved call: when it may be sent (monotonic), and how to give it back."""

    write: bool
    at: float
    member: str
    bucket_keys: tuple[str, ...]


class RateLimiter:
    def __init__(
        self,
        redis: Redis,
        *,
        windows: list[Window],
        spacing_ms: int = 0,
        margin_ms: int = 0,
        sleep: Callable[[float], None] = time.sleep,
        on_wait: Callable[[float], None] | None = None,
    ) -> None:
        self._redis = redis
        self._on_wait = on_wait
        self._script = redis.register_script(_RESERVE)
        self._windows = windows
        self._spacing_ms = spacing_ms
        self.margin_seconds = margin_ms / 1000
        self._sleep = sleep
        self.waited_seconds = 0.0

    @classmethod
    def for_nexudus(
        cls,
        redis: Redis,
        settings: Settings,
        on_wait: Callable[[float], None] | None = None,
        sleep: Callable[[float], None] = time.sleep,
        share: tuple[str, float] | None = None,
    ) -> RateLimiter:
        """The workers' limiter. With ``share`` (a name, a fraction), one whose calls also
        count in a window of their own holding them to that fraction of the calls a
        minute: a reader beside the workers (the audit) that cannot crowd them out."""
        margin = settings.nexudus_rate_margin_ms
        windows = [
            Window("calls-minute", settings.nexudus_calls_per_minute, 60_000 + margin),
            Window("writes-minute", settings.nexudus_writes_per_minute, 60_000 + margin, True),
            Window("writes-day", settings.nexudus_writes_per_day, 86_400_000 + margin, True),
        ]
        if share is not None:
            name, fraction = share
            limit = max(1, int(settings.nexudus_calls_per_minute * fraction))
            windows.append(Window(f"{name}-calls-minute", limit, 60_000 + margin))
        return cls(
            redis,
            windows=windows,
            spacing_ms=settings.nexudus_min_interval_ms,
            margin_ms=margin,
            on_wait=on_wait,
            sleep=sleep,
        )

    def acquire(self, *, write: bool) -> None:
        """Block until one call fits every limit, then record it."""
        [slot] = self.reserve([write])
        self.wait_for(slot)

    def reserve(self, writes: Sequence[bool]) -> list[Slot]:
        """Block until all these calls fit, then record them one spacing apart."""
        if not self.can_reserve(writes):
            raise ValueError(f"{len(writes)} slots never fit the limits at once")
        member = secrets.token_hex(8)
        windows = [
            w for w in self._windows if not w.writes_only or any(writes)
        ]  # a read-only reservation leaves the write logs alone
        bucket_keys = [redis_keys.rate_bucket(w.name) for w in windows]
        args: list[str | int] = [member, "".join("1" if w else "0" for w in writes)]
        args.append(self._spacing_ms)
        for window in windows:
            args.extend((window.limit, window.window_ms, "w" if window.writes_only else "a"))
        while True:
            reply = self._script(
                keys=[redis_keys.rate_bucket("next-slot"), *bucket_keys], args=args
            )
            started = time.monotonic()
            if int(reply[0]) == 0 and len(reply) == len(writes) + 1:
                return [
                    Slot(
                        write=write,
                        at=started + int(offset) / 1000,
                        member=f"{member}:{n}",
                        bucket_keys=tuple(
                            key
                            for key, w in zip(bucket_keys, windows, strict=True)
                            if write or not w.writes_only
                        ),
                    )
                    for n, (write, offset) in enumerate(zip(writes, reply[1:], strict=True), 1)
                ]
            self._wait(int(reply[0]), write=any(writes))

    def can_reserve(self, writes: Sequence[bool]) -> bool:
        """Whether every limit could ever hold these calls at once."""
        return len(writes) > 0 and all(
            (sum(writes) if w.writes_only else len(writes)) <= w.limit for w in self._windows
        )

    def wait_for(self, slot: Slot) -> None:
        delay = slot.at - time.monotonic()
        if delay > 0:
            self._sleep(delay)

    def release(self, slots: Sequence[Slot]) -> None:
        """Give back reserved slots that will not be used, for other calls to take."""
        if not slots:
            return
        with self._redis.pipeline(transaction=False) as pipe:
            for slot in slots:
                for key in slot.bucket_keys:
                    pipe.zrem(key, slot.member)
            pipe.execute()

    def _wait(self, wait_ms: int, *, write: bool) -> None:
        if wait_ms > MAX_INLINE_WAIT_MS:
            # A full daily budget, say: give the worker back and retry later.
            raise RateLimited(
                f"Nexudus {'write' if write else 'call'} budget spent for {wait_ms / 1000:.0f} s",
                retry_after=wait_ms / 1000,
            )
        if wait_ms > 1000:
            log.info("nexudus.rate_limit_wait", extra={"wait_ms": wait_ms, "write": write})
        self.waited_seconds += wait_ms / 1000
        if self._on_wait is not None:
            self._on_wait(wait_ms / 1000)
        self._sleep(wait_ms / 1000)
