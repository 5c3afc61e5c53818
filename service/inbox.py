"""Record each event once and queue its job, atomically, without blocking the loop.

One Lua script per event does what ``Queue.enqueue`` would (job hash, queue set, push)
plus the dedupe record, in a single round trip; a batch of events is one pipeline.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Sequence
from enum import StrEnum
from typing import Any

from redis._parsers.encoders import Encoder
from redis.asyncio import Redis
from redis.exceptions import NoScriptError, RedisError

from payhooks import keys, trail
from payhooks.events import Ignored, PaymentEvent
from payhooks.jobspec import JobFactory
from payhooks.trail import StoredWebhook
from service.errors import QueueUnavailable

# KEYS: event key, job key, queue key, rq:queues, trail key, invoice index key, webhook key
# ARGV: event json, ttl seconds, job id, job data, description, timestamp,
#       trail "received", trail "enqueued", trail "duplicate", invoice index score ('' = none),
#       event key, webhook body ('' = stored already), its headers, redacted flag, provider
# The webhook is kept first, for the trail; the dedupe record is written after the job:
# Redis does not undo a script's earlier writes when a later command fails, and a record
# without its job would turn every redelivery away.
_RECORD_AND_ENQUEUE = """
if ARGV[12] ~= '' then
    redis.call('HSET', KEYS[7], 'body', ARGV[12], 'headers', ARGV[13], 'redacted', ARGV[14],
               'provider', ARGV[15], 'received_at', ARGV[6])
    redis.call('EXPIRE', KEYS[7], ARGV[2])
end
if redis.call('EXISTS', KEYS[1]) == 1 or redis.call('EXISTS', KEYS[2]) == 1 then
    redis.call('RPUSH', KEYS[5], ARGV[9])
    redis.call('EXPIRE', KEYS[5], ARGV[2])
    return 0
end
redis.call('HSET', KEYS[2], 'data', ARGV[4], 'description', ARGV[5],
           'created_at', ARGV[6], 'enqueued_at', ARGV[6]%s)
redis.call('SADD', KEYS[4], KEYS[3])
redis.call('RPUSH', KEYS[3], ARGV[3])
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
redis.call('RPUSH', KEYS[5], ARGV[7], ARGV[8])
redis.call('EXPIRE', KEYS[5], ARGV[2])
if ARGV[10] ~= '' then
    redis.call('ZADD', KEYS[6], 'NX', ARGV[10], ARGV[11])
    redis.call('EXPIRE', KEYS[6], ARGV[2])
end
return 1
"""


_ENCODER = Encoder(  # type: ignore[no-untyped-call]
    encoding="utf-8", encoding_errors="strict", decode_responses=False
)


def _lua_string(value: Any) -> str:
    """A Lua string literal holding exactly the bytes redis-py would send for ``value``;
    every byte is escaped, so nothing can break out of the literal."""
    raw: bytes = _ENCODER.encode(value)  # type: ignore[no-untyped-call]
    return '"' + "".join(f"\\{byte}" for byte in raw) + '"'


def record_and_enqueue_script(jobs: JobFactory) -> str:
    """The script, with the job fields that never vary written into it as constants."""
    constants = "".join(
        f", {_lua_string(name)}, {_lua_string(value)}"
        for name, value in jobs.constant_fields.items()
    )
    return _RECORD_AND_ENQUEUE % constants


def _flatten(mapping: dict[str, Any]) -> list[Any]:
    return [item for pair in mapping.items() for item in pair]


class NotReplicated(RedisError):
    """Fewer replicas than REDIS_ACK_REPLICAS confirmed the writes within the timeout."""


class Accepted(StrEnum):
    QUEUED = "queued"
    DUPLICATE = "duplicate"


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
        self._jobs = jobs
        self._ttl = event_ttl_seconds
        self._source = record_and_enqueue_script(jobs)
        self._sha = hashlib.sha1(self._source.encode()).hexdigest()  # noqa: S324 (Redis's script id)
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
        at = trail.now_iso()
        # The first event's script stores the webhook; without events, a plain HSET does.
        calls: list[list[Any]] = [
            self._call(event, webhook, at, store_webhook=n == 0) for n, event in enumerate(events)
        ]
        if not events:
            calls.append(["HSET", webhook.key, *_flatten(webhook.mapping())])
            calls.append(["EXPIRE", webhook.key, self._ttl])
        for item in ignored:
            trail_key = keys.trail(f"{webhook.provider}:{item.event_id}")
            received = trail.entry_at(
                at, "received", event_type=item.event_type, webhook=webhook.key
            )
            ignored_entry = trail.entry_at(at, "ignored", reason=item.reason)
            calls.append(["RPUSH", trail_key, received, ignored_entry])
            calls.append(["EXPIRE", trail_key, self._ttl])
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
        return [
            Accepted.QUEUED if result == 1 else Accepted.DUPLICATE
            for result in results[: len(events)]
        ]

    def _call(
        self, event: PaymentEvent, webhook: StoredWebhook, at: str, *, store_webhook: bool
    ) -> list[Any]:
        job = self._jobs.fields(event.key, f"{event.provider} {event.event_type} {event.event_id}")
        invoice_id = event.invoice.invoice_id
        return [
            "EVALSHA",
            self._sha,
            7,
            keys.event(event.key),
            job.job_key,
            self._jobs.queue_key,
            "rq:queues",
            keys.trail(event.key),
            keys.invoice_events(invoice_id if invoice_id is not None else 0),
            webhook.key,
            event.to_json(),
            self._ttl,
            job.job_id,
            job.data,
            job.description,
            job.timestamp,
            trail.entry_at(at, "received", event_type=event.event_type, webhook=webhook.key),
            trail.entry_at(at, "enqueued", job_id=job.job_id),
            trail.entry_at(at, "duplicate"),
            "" if invoice_id is None else f"{time.time():.3f}",
            event.key,
            webhook.body if store_webhook else "",
            webhook.headers_json,
            "1" if webhook.redacted else "0",
            webhook.provider,
        ]

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
        for attempt in (1, 2):
            async with self._redis.pipeline(transaction=False) as pipe:
                for call in calls:
                    pipe.execute_command(*call)
                if self._ack_replicas:
                    # On the writes' own connection, so WAIT covers exactly them.
                    pipe.execute_command("WAIT", self._ack_replicas, self._ack_timeout_ms)
                try:
                    return self._replicated(list(await pipe.execute()))
                except NoScriptError:
                    # First use, or Redis restarted and lost its script cache.
                    if attempt == 2:
                        raise
                    await self._redis.script_load(self._source)
        raise AssertionError("unreachable")

    def _replicated(self, results: list[Any]) -> list[Any]:
        """The results without WAIT's, if enough replicas hold the writes; else the
        callers answer 503 and the provider's retry is deduplicated (or, after a failover
        that lost the writes, queued afresh)."""
        if not self._ack_replicas:
            return results
        *results, replicas = results
        if int(replicas) < self._ack_replicas:
            raise NotReplicated(f"{replicas} of {self._ack_replicas} replicas confirmed in time")
        return results

    async def prepare(self) -> None:
        """Load the script now, so the first webhooks need not; Redis may still be down."""
        try:
            await self._redis.script_load(self._source)
        except (RedisError, OSError):
            pass

    async def ping(self) -> bool:
        try:
            return bool(await self._redis.ping())
        except (RedisError, OSError):
            return False
