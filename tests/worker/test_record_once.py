"""Record-once-and-enqueue, the storage's hand-off: its sync runner (what a worker-side
poller or a replay uses) writes exactly what the receiver's async runner writes, and the
worker applies what it queued."""

from __future__ import annotations

import asyncio
import json

import pytest
from redis import Redis
from rq import Queue

from payhooks.devtools.sandbox.nexudus import SandboxState
from payhooks.domain.events import PaymentEvent
from payhooks.providers.receivers import build_providers
from payhooks.providers.stripe import sample as samples
from payhooks.settings import Settings
from payhooks.storage import redis_connect, redis_keys
from payhooks.storage.jobs import JobFactory
from payhooks.storage.record_once import (
    Accepted,
    RecordOnce,
    record_events,
    recorded,
    run_async,
)
from payhooks.storage.trail import StoredWebhook, Trail
from tests.support.processes import RunWorker


def stripe_event(settings: Settings, invoice: int) -> tuple[StoredWebhook, list[PaymentEvent]]:
    body = json.dumps(samples.paid_event(invoice)).encode()
    receiver = build_providers(settings)["stripe"]
    events = [e for e in receiver.normalise(body, {}) if isinstance(e, PaymentEvent)]
    return StoredWebhook.of("stripe", body, {}, receiver.redact(body)), events


def recorder(settings: Settings) -> RecordOnce:
    return RecordOnce(JobFactory(settings), event_ttl_seconds=settings.event_ttl_seconds)


def test_the_sync_runner_queues_each_event_once_and_the_worker_applies_it(
    settings: Settings,
    redis: Redis,
    queue: Queue,
    sandbox_state: SandboxState,
    run_worker: RunWorker,
) -> None:
    webhook, events = stripe_event(settings, 42)
    assert record_events(redis, recorder(settings), webhook, events) == [Accepted.QUEUED]
    assert record_events(redis, recorder(settings), webhook, events) == [Accepted.DUPLICATE]
    assert queue.count == 1
    stages = [e["stage"] for e in Trail(redis, ttl_seconds=60).history(events[0].key)]
    assert stages == ["received", "enqueued", "duplicate"]
    # Entries the script writes read as trail.entry_at's, and repeat nothing the body says
    # (nor the job id, which is the event key's).
    received, enqueued, duplicate = Trail(redis, ttl_seconds=60).history(events[0].key)
    assert received == {"at": received["at"], "stage": "received", "webhook": webhook.key}
    assert enqueued == {"at": received["at"], "stage": "enqueued"}
    assert duplicate == {"at": duplicate["at"], "stage": "duplicate", "webhook": webhook.key}
    run_worker()
    assert sandbox_state.invoices[42]["Paid"] is True


def test_the_sync_and_async_runners_write_the_same_records(
    settings: Settings, redis: Redis
) -> None:
    synced, [first] = stripe_event(settings, 42)
    record_events(redis, recorder(settings), synced, [first])
    awaited, [second] = stripe_event(settings, 43)

    async def record_async() -> list[object]:
        client = redis_connect.async_client(settings)
        try:
            record = recorder(settings)
            return await run_async(client, record, record.calls(awaited, [second]))
        finally:
            await client.aclose()

    assert asyncio.run(record_async()) == [1]

    def written(event: PaymentEvent) -> dict[str, set[str]]:
        job = redis.hgetall(f"rq:job:{redis_keys.job_id(event.key)}")
        return {"job": {k.decode() for k in job}}

    assert written(first) == written(second)
    assert (Trail(redis, ttl_seconds=60).webhook(synced.key) or {})["body"] == synced.body


#: Trails as each release leaves them, and whether they say the event was queued: entries
#: written as JSON (up to main 8cd8f52), then as this release writes them.
TRAILS = {
    "json enqueued": (['{"at":"2026-12-07T01:48:21.478Z","stage":"enqueued"}'], True),
    "json replayed": (['{"at":"x","stage":"replayed","job_id":"j"}'], True),
    "json ignored": (['{"at":"x","stage":"ignored","reason":"\\"stage\\":\\"enqueued\\""}'], False),
    "received+enqueued": (['1796607846585 received+enqueued {"w":"3c26"}'], True),
    "polled+enqueued": (['1796607846585 polled+enqueued {"o":"3c26"}'], True),
    "enqueued by another": (['1796607846585 enqueued {"by":"forte:x"}'], True),
    "replayed": (['1796607846585 replayed {"j":"j","s":"stored webhook"}'], True),
    "received, ignored": (
        ['1796607846585 received {"w":"3c26"}', '1796607846585 ignored {"r":"enqueued"}'],
        False,
    ),
}


@pytest.mark.parametrize(("entries", "queued"), TRAILS.values(), ids=TRAILS.keys())
def test_the_script_and_recorded_read_the_trail_alike(
    settings: Settings, redis: Redis, queue: Queue, entries: list[str], queued: bool
) -> None:
    webhook, [event] = stripe_event(settings, 42)
    redis.rpush(redis_keys.trail(event.key), *entries)
    assert recorded(redis, [event.key]) == [queued]
    expected = Accepted.DUPLICATE if queued else Accepted.QUEUED
    assert record_events(redis, recorder(settings), webhook, [event]) == [expected]
    assert queue.count == (0 if queued else 1)
