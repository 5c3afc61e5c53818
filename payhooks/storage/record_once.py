"""Record each event once and queue its one job: the hand-off every front door shares.

Whatever brings an event in (a verified webhook now; a poll of a provider's API), the
same writes follow, atomically, in one Lua script per event: the origin is kept (the
webhook's body and signature headers), the trail gets its entries, and, unless the event
was recorded before, the dedupe record and the one RQ job (what ``Queue.enqueue`` would
write: job hash, queue set, push). ``RecordOnce`` builds the script's calls for a batch;
``run_sync`` runs them with redis-py (a worker-side poller, a replay), ``run_async`` with
redis.asyncio (the receiver, whose group commit in service/inbox.py sits on top of it).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from enum import StrEnum
from typing import Any

from redis import Redis
from redis.asyncio import Redis as AsyncRedis
from redis.exceptions import NoScriptError, RedisError

from payhooks.domain.events import Ignored, PaymentEvent
from payhooks.storage import redis_keys, trail
from payhooks.storage.jobs import JobFactory, utc_timestamp
from payhooks.storage.trail import StoredWebhook

# The script's inputs, by name: the Lua reads them into locals of these names (as arq
# names every script input), and the Python side builds them from dicts of these names.
SCRIPT_KEYS = (
    "event_key",
    "job_key",
    "queue_key",
    "queues_key",
    "trail_key",
    "invoice_index",
    "webhook_key",
)
SCRIPT_ARGS = (
    "event_json",  # the normalised event, stored as the dedupe record
    "ttl",  # seconds every record of ours is kept
    "job_id",
    "job_data",
    "job_description",
    "timestamp",  # created_at and enqueued_at of the job, received_at of the webhook
    "trail_received",
    "trail_enqueued",
    "trail_duplicate",
    "invoice_score",  # '' when the event names no invoice id
    "event_name",  # the event key, as the invoice index's member
    "webhook_body",  # '' when stored already (by the batch's first event); compressed
    "webhook_encoding",  # how (payhooks/storage/bodies.py)
    "webhook_headers",
    "webhook_redacted",
    "provider",
)

# The webhook is kept first, for the trail; the dedupe record is written after the job:
# Redis does not undo a script's earlier writes when a later command fails, and a record
# without its job would turn every redelivery away.
_RECORD_AND_ENQUEUE = """
if webhook_body ~= '' then
    redis.call('HSET', webhook_key, 'body', webhook_body, 'encoding', webhook_encoding,
               'headers', webhook_headers, 'redacted', webhook_redacted, 'provider', provider,
               'received_at', timestamp)
    redis.call('EXPIRE', webhook_key, ttl)
end
if redis.call('EXISTS', event_key) == 1 or redis.call('EXISTS', job_key) == 1 then
    redis.call('RPUSH', trail_key, trail_duplicate)
    redis.call('EXPIRE', trail_key, ttl)
    return 0
end
redis.call('HSET', job_key, 'data', job_data, 'description', job_description,
           'created_at', timestamp, 'enqueued_at', timestamp%s)
redis.call('SADD', queues_key, queue_key)
redis.call('RPUSH', queue_key, job_id)
redis.call('SET', event_key, event_json, 'EX', ttl)
redis.call('RPUSH', trail_key, trail_received, trail_enqueued)
redis.call('EXPIRE', trail_key, ttl)
if invoice_score ~= '' then
    redis.call('ZADD', invoice_index, 'NX', invoice_score, event_name)
    redis.call('EXPIRE', invoice_index, ttl)
end
return 1
"""


def _named_inputs() -> str:
    keys_ = "".join(f"local {name} = KEYS[{n}]\n" for n, name in enumerate(SCRIPT_KEYS, 1))
    args = "".join(f"local {name} = ARGV[{n}]\n" for n, name in enumerate(SCRIPT_ARGS, 1))
    return keys_ + args


def _encode(value: Any) -> bytes:
    """The bytes Redis receives for ``value`` (redis-py sends str as UTF-8, numbers as
    their text, bytes as they are)."""
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):  # str subclasses (RQ's JobStatus) send their value
        return value.encode()
    if isinstance(value, bool):
        raise TypeError("Redis takes no booleans")
    if isinstance(value, float):
        return repr(value).encode()
    return str(value).encode()


def _lua_string(value: Any) -> str:
    """A Lua string literal holding exactly those bytes; every byte is escaped, so nothing
    can break out of the literal."""
    return '"' + "".join(f"\\{byte}" for byte in _encode(value)) + '"'


def record_and_enqueue_script(jobs: JobFactory) -> str:
    """The script, with the job fields that never vary written into it as constants."""
    constants = "".join(
        f", {_lua_string(name)}, {_lua_string(value)}"
        for name, value in jobs.constant_fields.items()
    )
    return _named_inputs() + _RECORD_AND_ENQUEUE % constants


def _flatten(mapping: dict[str, Any]) -> list[Any]:
    return [item for pair in mapping.items() for item in pair]


class NotReplicated(RedisError):
    """Fewer replicas than REDIS_ACK_REPLICAS confirmed the writes within the timeout."""


class Accepted(StrEnum):
    QUEUED = "queued"
    DUPLICATE = "duplicate"


class RecordOnce:
    """The calls that record a batch's events once and queue their jobs (one script call
    per event), and what their answers mean."""

    def __init__(self, jobs: JobFactory, *, event_ttl_seconds: int) -> None:
        self._jobs = jobs
        self._ttl = event_ttl_seconds
        self.source = record_and_enqueue_script(jobs)
        self.sha = hashlib.sha1(self.source.encode()).hexdigest()  # noqa: S324 (Redis's script id)

    def calls(
        self,
        webhook: StoredWebhook,
        events: Sequence[PaymentEvent],
        ignored: Sequence[Ignored] = (),
    ) -> list[list[Any]]:
        """Keep the webhook, queue a job per new event, note ignored ones in the trail."""
        at = trail.now_iso()
        stamp = utc_timestamp()
        # The first event's script stores the webhook; without events, a plain HSET does.
        calls: list[list[Any]] = [
            self._call(event, webhook, at, stamp, store_webhook=n == 0)
            for n, event in enumerate(events)
        ]
        if not events:
            calls.append(["HSET", webhook.key, *_flatten(webhook.mapping())])
            calls.append(["EXPIRE", webhook.key, self._ttl])
        for item in ignored:
            trail_key = redis_keys.trail(f"{webhook.provider}:{item.event_id}")
            received = trail.entry_at(
                at, "received", event_type=item.event_type, webhook=webhook.key
            )
            ignored_entry = trail.entry_at(at, "ignored", reason=item.reason)
            calls.append(["RPUSH", trail_key, received, ignored_entry])
            calls.append(["EXPIRE", trail_key, self._ttl])
        return calls

    @staticmethod
    def accepted(results: Sequence[Any], events: int) -> list[Accepted]:
        """What happened to each of the first ``events`` calls' events, in order."""
        return [
            Accepted.QUEUED if result == 1 else Accepted.DUPLICATE for result in results[:events]
        ]

    def _call(
        self,
        event: PaymentEvent,
        webhook: StoredWebhook,
        at: str,
        stamp: str,
        *,
        store_webhook: bool,
    ) -> list[Any]:
        job = self._jobs.fields(
            event.key, f"{event.provider} {event.event_type} {event.event_id}", stamp
        )
        invoice_id = event.invoice.invoice_id
        script_keys = {
            "event_key": redis_keys.event(event.key),
            "job_key": job.job_key,
            "queue_key": self._jobs.queue_key,
            "queues_key": "rq:queues",
            "trail_key": redis_keys.trail(event.key),
            "invoice_index": redis_keys.invoice_events(invoice_id if invoice_id is not None else 0),
            "webhook_key": webhook.key,
        }
        script_args = {
            "event_json": event.to_json(),
            "ttl": self._ttl,
            "job_id": job.job_id,
            "job_data": job.data,
            "job_description": job.description,
            "timestamp": job.timestamp,
            "trail_received": trail.entry_at(
                at, "received", event_type=event.event_type, webhook=webhook.key
            ),
            "trail_enqueued": trail.entry_at(at, "enqueued", job_id=job.job_id),
            # Which delivery it was: its body is kept too, under that key.
            "trail_duplicate": trail.entry_at(at, "duplicate", webhook=webhook.key),
            "invoice_score": "" if invoice_id is None else f"{time.time():.3f}",
            "event_name": event.key,
            "webhook_body": webhook.stored_body if store_webhook else "",
            "webhook_encoding": webhook.encoding,
            "webhook_headers": webhook.headers_json,
            "webhook_redacted": "1" if webhook.redacted else "0",
            "provider": webhook.provider,
        }
        return [
            "EVALSHA",
            self.sha,
            len(SCRIPT_KEYS),
            *(script_keys[name] for name in SCRIPT_KEYS),
            *(script_args[name] for name in SCRIPT_ARGS),
        ]


def run_sync(redis: Redis, record: RecordOnce, calls: list[list[Any]]) -> list[Any]:
    """Run ``calls`` in one round trip with redis-py; their answers, in order."""
    for attempt in (1, 2):
        with redis.pipeline(transaction=False) as pipe:
            for call in calls:
                pipe.execute_command(*call)  # type: ignore[no-untyped-call]
            try:
                return list(pipe.execute())
            except NoScriptError:
                # First use, or Redis restarted and lost its script cache.
                if attempt == 2:
                    raise
        redis.script_load(record.source)
    raise AssertionError("unreachable")


def record_events(
    redis: Redis,
    record: RecordOnce,
    webhook: StoredWebhook,
    events: Sequence[PaymentEvent],
    ignored: Sequence[Ignored] = (),
) -> list[Accepted]:
    """Record ``events`` once and queue their jobs, synchronously: what happened to each."""
    results = run_sync(redis, record, record.calls(webhook, events, ignored))
    return record.accepted(results, len(events))


async def run_async(
    redis: AsyncRedis,
    record: RecordOnce,
    calls: list[list[Any]],
    *,
    ack_replicas: int = 0,
    ack_timeout_ms: int = 500,
) -> list[Any]:
    """Run ``calls`` in one round trip with redis.asyncio; with ``ack_replicas``, only once
    that many replicas hold the writes (WAIT), else ``NotReplicated``."""
    for attempt in (1, 2):
        async with redis.pipeline(transaction=False) as pipe:
            for call in calls:
                pipe.execute_command(*call)
            if ack_replicas:
                # On the writes' own connection, so WAIT covers exactly them.
                pipe.execute_command("WAIT", ack_replicas, ack_timeout_ms)
            try:
                return _replicated(list(await pipe.execute()), ack_replicas)
            except NoScriptError:
                # First use, or Redis restarted and lost its script cache.
                if attempt == 2:
                    raise
                await redis.script_load(record.source)
    raise AssertionError("unreachable")


def _replicated(results: list[Any], ack_replicas: int) -> list[Any]:
    """The results without WAIT's, if enough replicas hold the writes; else the callers
    answer 503 and the provider's retry is deduplicated (or, after a failover that lost
    the writes, queued afresh)."""
    if not ack_replicas:
        return results
    *results, replicas = results
    if int(replicas) < ack_replicas:
        raise NotReplicated(f"{replicas} of {ack_replicas} replicas confirmed in time")
    return results
