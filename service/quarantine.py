"""Verified webhooks the code could not normalise: kept, acknowledged, counted.

A provider that gets a 4xx or 5xx for a genuine notification retries it for days, then
disables the endpoint; no retry makes our code read it better. So a verified body whose
normalisation fails is stored as every other verified webhook is (raw or redacted body,
signature headers), its key added to ``payhooks:unprocessed`` with the reason, and the
provider gets its 2xx. ``payhooks unprocessed list | show | replay`` take it from there.
"""

from __future__ import annotations

import time

from redis.asyncio import Redis
from redis.exceptions import RedisError

from payhooks.providers.kit.receiver_errors import QueueUnavailable
from payhooks.storage.trail import StoredWebhook
from payhooks.storage.unprocessed import queue_keep
from service.inbox import NotReplicated


class Quarantine:
    def __init__(
        self, redis: Redis, *, ttl_seconds: int, ack_replicas: int = 0, ack_timeout_ms: int = 500
    ) -> None:
        self._redis = redis
        self._ttl = ttl_seconds
        self._ack_replicas = ack_replicas
        self._ack_timeout_ms = ack_timeout_ms

    async def keep(self, webhook: StoredWebhook, reason: str) -> None:
        """Store the webhook and list it as unprocessed; QueueUnavailable (503, the
        provider retries, and the retry writes the same keys) unless Redis confirmed it,
        with REDIS_ACK_REPLICAS replicas as for queued events."""
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                queue_keep(pipe, webhook, reason, ttl_seconds=self._ttl, now=time.time())
                if self._ack_replicas:
                    pipe.execute_command("WAIT", self._ack_replicas, self._ack_timeout_ms)
                results = await pipe.execute()
            if self._ack_replicas and int(results[-1]) < self._ack_replicas:
                raise NotReplicated(f"{results[-1]} of {self._ack_replicas} replicas confirmed")
        except (RedisError, OSError) as exc:
            raise QueueUnavailable(f"queue unavailable: {exc.__class__.__name__}") from None
