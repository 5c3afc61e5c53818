"""Redis bytes per event, by kind of key: what bench.memory and its per-provider table
measure with (``MEMORY USAGE`` of every key, used_memory freed by deleting each kind's
keys), and what a day's expiries would have left."""

from __future__ import annotations

from collections import Counter

from redis import Redis

#: Targets of issue 21, as multiples of the raw body per event.
TARGETS = {"queued": 1.5, "applied": 1.0, "kept": 0.5}
MAX_KEYS_QUEUED = 3
DAY = 86400
#: Keys that outlive EVENT_RETENTION_DAYS (30): the money path's markers (400 days).
LONG_TTL = 31 * DAY
MARKER_DAYS = 400
#: In the steady state, the markers of this many months' events are in Redis.
MONTHS_OF_MARKERS = MARKER_DAYS / (365 / 12)
#: Bounded by Nexudus's limits or fixed, not by the number of events.
SHARED = frozenset(
    {
        "rq:queues",
        "rq:workers",
        "rq:worker",
        "rq:queue",
        "rq:finished",
        "rq:wip",
        "rq:started",
        "rq:failed",
        "rq:scheduled",
        "payhooks:nexudus",
        "payhooks:metrics",
        "payhooks:breaker",
        "payhooks:rate",
        "payhooks:job-template",
    }
)

#: (bytes by kind, keys by kind, used_memory)
Usage = tuple[Counter[str], Counter[str], int]


def steady_state(month: int, kept: float, long: float, job: float) -> float:
    """Bytes in Redis, steady state, for ``month`` events a month kept ``kept`` bytes each
    (``long`` of them kept MARKER_DAYS): what EVENT_RETENTION_DAYS (30) keeps for a month
    of them, the markers of 400 days of them, the jobs (``job`` bytes each) of a tenth of
    the month queued at once (a billing run)."""
    return month * (kept - long) + MONTHS_OF_MARKERS * month * long + month / 10 * job


def kind_of(key: str) -> str:
    """A key's kind: its prefix up to the part that names one thing; an invoice's keys by
    what follows its id (``payhooks:invoice:events``), its money record alone."""
    parts = key.split(":")
    if parts[:2] == ["payhooks", "invoice"] and len(parts) > 3:
        return ":".join([*parts[:2], *parts[3:]])
    return ":".join(parts[:2])


def per_invoice(kind: str) -> bool:
    return kind.startswith("payhooks:invoice")


def usage(redis: Redis, shared: frozenset[str] = SHARED) -> Usage:
    """(bytes by kind, keys by kind, used_memory); kinds kept beyond EVENT_RETENTION_DAYS
    are also counted as "long"."""
    size: Counter[str] = Counter()
    keys: Counter[str] = Counter()
    for key in redis.scan_iter(count=1000):
        name = key.decode()
        used = int(redis.memory_usage(key, samples=0) or 0)
        size[kind_of(name)] += used
        keys[kind_of(name)] += 1
        if kind_of(name) not in shared and redis.ttl(key) > LONG_TTL:
            size["long"] += used
    return size, keys, int(redis.info("memory")["used_memory"])


def per_event(measured: Usage, events: int, shared: frozenset[str] = SHARED) -> dict[str, float]:
    """MEMORY USAGE per event of each kind that grows with the events."""
    return {k: v / events for k, v in measured[0].items() if k not in shared | {"long"}}


def keys_per_event(measured: Usage, events: int, shared: frozenset[str] = SHARED) -> float:
    """Keys per event, the per-invoice ones left out (each event here names its own invoice)."""
    keys = measured[1]
    return sum(v for k, v in keys.items() if k not in shared and not per_invoice(k)) / events


def loose_kinds(redis: Redis, shared: frozenset[str] = SHARED) -> Counter[str]:
    """Keys by kind not in Redis's compact encoding: a hash or sorted set with a value over
    64 bytes (hash-max-listpack-value, zset-max-listpack-value) or over 128 entries is
    kept as a hash table (and skiplist), several times its compact size."""
    found: Counter[str] = Counter()
    for key in redis.scan_iter(count=1000):
        kind = kind_of(key.decode())
        if (
            kind not in shared
            and redis.type(key) in (b"hash", b"zset")
            and redis.object("encoding", key) in (b"hashtable", b"skiplist")
        ):
            found[kind] += 1
    return found


def used_memory_by_kind(
    redis: Redis, events: int, shared: frozenset[str] = SHARED
) -> dict[str, float]:
    """used_memory per event that each kind's keys hold (all but the shared ones), measured
    by deleting them kind by kind: what MEMORY USAGE leaves out (the key's entry in the
    keyspace and in the expires table, the allocator's rounding) included. Deletes them."""
    found: dict[str, list[bytes]] = {}
    for key in redis.scan_iter(count=1000):
        kind = kind_of(key.decode())
        if kind not in shared:
            found.setdefault(kind, []).append(key)
    freed = {}
    for kind, keys in sorted(found.items()):
        before = int(redis.info("memory")["used_memory"])
        for start in range(0, len(keys), 500):
            redis.delete(*keys[start : start + 500])
        freed[kind] = (before - int(redis.info("memory")["used_memory"])) / events
    return freed


def expire_within(redis: Redis, seconds: int) -> None:
    """What Redis would have expired ``seconds`` from now (the probe cannot wait a day)."""
    for key in list(redis.scan_iter(count=1000)):
        ttl = redis.ttl(key)
        if 0 <= ttl <= seconds:
            redis.delete(key)
