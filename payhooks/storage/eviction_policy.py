"""Whether the Redis we use may evict our keys.

Every key payhooks writes has a TTL (events, trail, ledgers, markers, RQ's jobs), so a
``volatile-*`` policy evicts them exactly as an ``allkeys-*`` one does: under memory
pressure a half-paid invoice's ledger, a dedupe record or a queued job silently goes.
Only ``noeviction`` is safe (Redis then refuses writes when full, which we see and
retry). The policy is read from ``INFO memory``, which managed services answer where
they disable ``CONFIG GET``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import redis
import redis.asyncio

SAFE_POLICY = "noeviction"
WHAT_TO_SET = (
    "set maxmemory-policy noeviction (redis.conf, CONFIG SET, or the managed service's "
    "parameter group) and size memory for the retention windows"
)


def eviction_problem(memory_info: Mapping[str, Any]) -> str | None:
    """None when Redis will never evict our keys; else what is wrong and what to set."""
    policy = memory_info.get("maxmemory_policy")
    if policy is None:
        return (
            "Redis did not say its maxmemory-policy (no maxmemory_policy in INFO memory), "
            f"so it may evict payhooks' keys: {WHAT_TO_SET}"
        )
    policy = policy.decode() if isinstance(policy, bytes) else str(policy)
    if policy == SAFE_POLICY:
        return None
    return (
        f"Redis's maxmemory-policy is {policy}: it may evict payhooks' keys (every one has "
        "a TTL, so volatile-* policies evict them as allkeys-* do) and lose queued jobs, "
        f"dedupe records and invoice ledgers; {WHAT_TO_SET}"
    )


def check(client: redis.Redis) -> str | None:
    return eviction_problem(client.info("memory"))


async def check_async(client: redis.asyncio.Redis) -> str | None:
    return eviction_problem(await client.info("memory"))
