"""Record each event once and queue its job, atomically, without blocking the loop.

One Lua script per event does what ``Queue.enqueue`` would (job hash, queue set, push)
plus the dedupe record, in a single round trip; a batch of events is one pipeline.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from redis.exceptions import RedisError

from payhooks import keys
from payhooks.events import PaymentEvent
from payhooks.jobspec import JobFactory
from service.errors import QueueUnavailable

# KEYS: event key, job key, queue key, rq:queues
# ARGV: event json, event ttl seconds, job id, job hash field/value pairs...
RECORD_AND_ENQUEUE = """
if not redis.call('SET', KEYS[1], ARGV[1], 'NX', 'EX', ARGV[2]) then
    return 0
end
if redis.call('EXISTS', KEYS[2]) == 1 then
    return 0
end
redis.call('HSET', KEYS[2], unpack(ARGV, 4))
redis.call('SADD', KEYS[4], KEYS[3])
redis.call('RPUSH', KEYS[3], ARGV[3])
return 1
"""


class Accepted(StrEnum):
    QUEUED = "queued"
    DUPLICATE = "duplicate"


class EventInbox:
    def __init__(self, redis: Redis, jobs: JobFactory, *, event_ttl_seconds: int) -> None:
        self._redis = redis
        self._jobs = jobs
        self._ttl = event_ttl_seconds
        self._script = redis.register_script(RECORD_AND_ENQUEUE)

    async def accept(self, events: Sequence[PaymentEvent]) -> list[Accepted]:
        """Queue a job per new event; return what happened to each, in order.

        Raises QueueUnavailable unless Redis confirmed every event, so the caller
        acknowledges only what is safely stored. A redelivery after a partial failure
        re-queues nothing that was already accepted.
        """
        if not events:
            return []
        try:
            if len(events) == 1:
                results = [await self._run(None, events[0])]
            else:
                async with self._redis.pipeline(transaction=False) as pipe:
                    for event in events:
                        await self._run(pipe, event)
                    results = await pipe.execute()
        except (RedisError, OSError) as exc:
            raise QueueUnavailable(f"queue unavailable: {exc.__class__.__name__}") from None
        return [Accepted.QUEUED if result == 1 else Accepted.DUPLICATE for result in results]

    async def _run(self, client: Pipeline | None, event: PaymentEvent) -> object:
        job_id, job_key, mapping = self._jobs.job_mapping(
            event.key, f"{event.provider} {event.event_type} {event.event_id}"
        )
        args: list[str | int | bytes] = [event.to_json(), self._ttl, job_id]
        for field, value in mapping.items():
            args.extend((field, value))
        return await self._script(
            keys=[keys.event(event.key), job_key, self._jobs.queue_key, "rq:queues"],
            args=args,
            client=client,
        )

    async def ping(self) -> bool:
        try:
            return bool(await self._redis.ping())
        except (RedisError, OSError):
            return False
