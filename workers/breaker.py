"""A circuit breaker for Nexudus, shared by every worker through Redis.

When most of the recent calls (from any worker) failed transiently (5xx, timeouts,
connection errors), Nexudus is down for everyone: retrying each job on its own only burns
its attempts and floods Nexudus as it comes back. The breaker then opens: no worker calls
Nexudus, and jobs go back to RQ without their attempt being counted. When the open period
ends, one call (the probe) is let through; its success closes the breaker, its failure
opens it again for twice as long (up to a cap).

Keys: the recent outcomes (a capped list), ``open`` (exists while open, with the open
period as its TTL), ``tripped`` (set from opening until a success closes it), ``probe``
(held by the one worker probing), ``period`` (the current open period).
"""

from __future__ import annotations

from dataclasses import dataclass

from redis import Redis

from payhooks.settings import Settings
from payhooks.storage import redis_keys

# Returns 0 when the call may go ahead, -1 when the caller is to probe, else the
# milliseconds until a call may be made.
_BEFORE_CALL = """
local open_ttl = redis.call('PTTL', KEYS[1])
if open_ttl > 0 then return open_ttl end
if redis.call('EXISTS', KEYS[2]) == 0 then return 0 end
if redis.call('SET', KEYS[3], ARGV[1], 'NX', 'PX', ARGV[2]) then return -1 end
if redis.call('GET', KEYS[3]) == ARGV[1] then return -1 end
-- Another worker is probing; its answer usually comes within moments.
return math.max(math.min(redis.call('PTTL', KEYS[3]), tonumber(ARGV[3])), 1)
"""

# KEYS: outcomes, open, tripped, probe, period
# ARGV: 's' or 'f', outcomes kept, least calls to judge, failure percent, base ms, cap ms
# Returns 'opened', 'closed' or ''.
_RECORD = """
local outcomes, open, tripped, probe, period = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local keep, least, percent = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local base, cap = tonumber(ARGV[5]), tonumber(ARGV[6])
if ARGV[1] == 's' then
    if redis.call('EXISTS', tripped) == 1 then
        redis.call('DEL', open, tripped, probe, period, outcomes)
        return 'closed'
    end
    redis.call('LPUSH', outcomes, 's')
    redis.call('LTRIM', outcomes, 0, keep - 1)
    redis.call('PEXPIRE', outcomes, 120000)
    return ''
end
if redis.call('EXISTS', open) == 1 then return '' end
if redis.call('EXISTS', tripped) == 1 then
    local next_period = math.min(tonumber(redis.call('GET', period) or base) * 2, cap)
    redis.call('SET', period, next_period, 'PX', cap * 3)
    redis.call('SET', tripped, '1', 'PX', cap * 3)
    redis.call('SET', open, '1', 'PX', next_period)
    redis.call('DEL', probe)
    return 'opened'
end
redis.call('LPUSH', outcomes, 'f')
redis.call('LTRIM', outcomes, 0, keep - 1)
redis.call('PEXPIRE', outcomes, 120000)
local recent = redis.call('LRANGE', outcomes, 0, -1)
if #recent < least then return '' end
local failed = 0
for _, outcome in ipairs(recent) do
    if outcome == 'f' then failed = failed + 1 end
end
if failed * 100 < percent * #recent then return '' end
redis.call('SET', open, '1', 'PX', base)
-- Forgotten if no call comes for a while (nothing to judge Nexudus by).
redis.call('SET', tripped, '1', 'PX', cap * 3)
redis.call('SET', period, base, 'PX', cap * 3)
redis.call('DEL', outcomes)
return 'opened'
"""


@dataclass(frozen=True, slots=True)
class BreakerConfig:
    recent_calls: int = 20
    least_calls: int = 10
    failure_percent: int = 50
    open_seconds: float = 15.0
    max_open_seconds: float = 120.0
    probe_timeout_seconds: float = 60.0

    @classmethod
    def from_settings(cls, settings: Settings) -> BreakerConfig:
        return cls(
            least_calls=settings.nexudus_breaker_min_calls,
            recent_calls=max(20, settings.nexudus_breaker_min_calls),
            open_seconds=settings.nexudus_breaker_open_seconds,
            max_open_seconds=settings.nexudus_breaker_max_open_seconds,
            probe_timeout_seconds=settings.nexudus_timeout_seconds * 2,
        )


class Breaker:
    def __init__(self, redis: Redis, config: BreakerConfig, *, caller: str) -> None:
        self._config = config
        self._caller = caller  # who holds the probe, so it may make its next call too
        self._before = redis.register_script(_BEFORE_CALL)
        self._record = redis.register_script(_RECORD)
        self._redis = redis
        prefix = redis_keys.breaker("nexudus")
        self._keys = [f"{prefix}:{part}" for part in ("open", "tripped", "probe")]
        self._outcome_keys = [
            f"{prefix}:outcomes",
            *self._keys,
            f"{prefix}:period",
        ]

    def wait_seconds(self) -> tuple[float, bool]:
        """(how long the breaker stays shut, whether this caller is to probe first)."""
        ms = int(
            self._before(
                keys=self._keys,
                args=[
                    self._caller,
                    int(self._config.probe_timeout_seconds * 1000),
                    int(self._config.open_seconds * 1000),
                ],
            )
        )
        return max(ms, 0) / 1000, ms < 0

    def record(self, *, ok: bool) -> str:
        """Count one call's outcome; returns 'opened' or 'closed' when that changed."""
        config = self._config
        result = self._record(
            keys=self._outcome_keys,
            args=[
                "s" if ok else "f",
                config.recent_calls,
                config.least_calls,
                config.failure_percent,
                int(config.open_seconds * 1000),
                int(config.max_open_seconds * 1000),
            ],
        )
        return result.decode() if isinstance(result, bytes) else str(result)

    def is_open(self) -> bool:
        return bool(self._redis.exists(self._keys[1]))
