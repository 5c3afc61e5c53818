"""Verified webhooks the code could not normalise: kept, acknowledged, counted.

A provider that gets a 4xx or 5xx for a genuine notification retries it for days, then
disables the endpoint; no retry makes our code read it better. So a verified body whose
normalisation fails is stored as every other verified webhook is (raw or redacted body,
signature headers), its key added to ``payhooks:unprocessed`` with the reason, and the
provider gets its 2xx. ``payhooks unprocessed list | show | replay`` take it from there.
"""

from __future__ import annotations

import time
import traceback
from pathlib import Path
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from payhooks.providers.kit.receiver_errors import QueueUnavailable, WebhookError
from payhooks.storage import trail
from payhooks.storage.trail import StoredWebhook
from service.inbox import NotReplicated

_OUR_CODE = ("service", "payhooks", "workers")


def reason_of(exc: BaseException) -> str:
    """Why, without the exception's message unless it is our own refusal: messages of
    parsers and the standard library quote the input, and this reason is logged."""
    if isinstance(exc, WebhookError):
        cause = f" ({reason_of(exc.__cause__)})" if exc.__cause__ is not None else ""
        return f"{exc.code}: {exc.message}{cause}"
    where = ""
    for frame in reversed(traceback.extract_tb(exc.__traceback__)):
        parts = Path(frame.filename).parts
        ours = [n for n, part in enumerate(parts) if part in _OUR_CODE]
        if ours:  # the innermost line of our own code: where a fix would go
            where = f" in {'/'.join(parts[ours[-1] :])}:{frame.lineno} ({frame.name})"
            break
    return f"{exc.__class__.__name__}{where}"


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
        fields: dict[Any, Any] = {**webhook.mapping(), "unprocessed": reason}
        now = time.time()
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                # A hash, beside its reason: the same body kept earlier as a string (a
                # delivery the code read then) is the same record, rewritten.
                pipe.delete(webhook.key)
                pipe.hset(webhook.key, mapping=fields)
                pipe.expire(webhook.key, self._ttl)
                # NX: a redelivery of the same body keeps its first time.
                pipe.zadd(trail.UNPROCESSED, {webhook.key: now}, nx=True)
                # Their bodies have expired: off the list, so the gauge counts what is left.
                pipe.zremrangebyscore(trail.UNPROCESSED, "-inf", now - self._ttl)
                pipe.expire(trail.UNPROCESSED, self._ttl)
                if self._ack_replicas:
                    pipe.execute_command("WAIT", self._ack_replicas, self._ack_timeout_ms)
                results = await pipe.execute()
            if self._ack_replicas and int(results[-1]) < self._ack_replicas:
                raise NotReplicated(f"{results[-1]} of {self._ack_replicas} replicas confirmed")
        except (RedisError, OSError) as exc:
            raise QueueUnavailable(f"queue unavailable: {exc.__class__.__name__}") from None
