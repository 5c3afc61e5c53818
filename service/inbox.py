"""The receiver's side of the hand-off: group commit over record-once-and-enqueue.

What is written per event (origin kept, trail, dedupe record, the one RQ job) is the
storage's (payhooks/storage/record_once.py), shared with every other way in; here the
receiver batches whatever arrives while one pipeline is in flight, without blocking the
loop, and turns a Redis failure into a 503 the provider retries.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from payhooks.domain.events import Ignored, PaymentEvent
from payhooks.providers.kit.receiver_errors import QueueUnavailable
from payhooks.storage.jobs import JobFactory
from payhooks.storage.record_once import Accepted, NotReplicated, RecordOnce, run_async
from payhooks.storage.trail import StoredWebhook

__all__ = ["Accepted", "EventInbox", "NotReplicated"]


class EventInbox:
    """Queues events with group commit: whatever arrives while one pipeline is in flight
    goes out together in the next, as soon as it returns (no timer, no added wait).

    Under load this turns fifty concurrent webhooks into a few Redis round trips
    instead of fifty, which is most of the receiver's CPU. Every caller still waits for
    Redis to confirm its own events before it answers.
    """

    def __init__(
        self,
        redis: Redis,
        jobs: JobFactory,
        *,
        event_ttl_seconds: int,
        ack_replicas: int = 0,
        ack_timeout_ms: int = 500,
    ) -> None:
        self._redis = redis
        self._ack_replicas = ack_replicas
        self._ack_timeout_ms = ack_timeout_ms
        self._record = RecordOnce(jobs, event_ttl_seconds=event_ttl_seconds)
        self._waiting: list[tuple[list[list[Any]], asyncio.Future[list[Any]]]] = []
        self._flushing = False
        self._flush_task: asyncio.Task[None] | None = None

    async def accept(
        self,
        webhook: StoredWebhook,
        events: Sequence[PaymentEvent],
        ignored: Sequence[Ignored] = (),
    ) -> list[Accepted]:
        """Keep the webhook, queue a job per new event, note ignored ones in the trail;
        return what happened to each event, in order.

        Raises QueueUnavailable unless Redis confirmed everything, so the caller
        acknowledges only what is safely stored. A redelivery after a partial failure
        re-queues nothing that was already accepted.
        """
        calls = self._record.calls(webhook, events, ignored)
        future: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()
        self._waiting.append((calls, future))
        if not self._flushing:
            self._flushing = True
            # Keep a reference: the loop holds tasks only weakly.
            self._flush_task = asyncio.create_task(self._flush())
        try:
            results = await future
        except (RedisError, OSError) as exc:
            raise QueueUnavailable(f"queue unavailable: {exc.__class__.__name__}") from None
        return self._record.accepted(results, len(events))

    async def _flush(self) -> None:
        try:
            while self._waiting:
                batch, self._waiting = self._waiting, []
                try:
                    results = await self._execute([call for calls, _ in batch for call in calls])
                except Exception as exc:  # noqa: BLE001 (handed to every caller in the batch)
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(exc)
                    continue
                except BaseException:
                    # Cancelled (shutdown): no caller may wait forever for an answer.
                    for _, future in [*batch, *self._waiting]:
                        if not future.done():
                            future.set_exception(ConnectionError("enqueue cancelled"))
                    raise
                offset = 0
                for calls, future in batch:
                    if not future.done():
                        future.set_result(results[offset : offset + len(calls)])
                    offset += len(calls)
        finally:
            self._flushing = False

    async def _execute(self, calls: list[list[Any]]) -> list[Any]:
        return await run_async(
            self._redis,
            self._record,
            calls,
            ack_replicas=self._ack_replicas,
            ack_timeout_ms=self._ack_timeout_ms,
        )

    async def prepare(self) -> None:
        """Load the script now, so the first webhooks need not; Redis may still be down."""
        try:
            await self._redis.script_load(self._record.source)
        except (RedisError, OSError):
            pass

    async def ping(self) -> bool:
        try:
            return bool(await self._redis.ping())
        except (RedisError, OSError):
            return False
