"""Record-once-and-enqueue, the storage's hand-off: its sync runner (what a worker-side
poller or a replay uses) writes exactly what the receiver's async runner writes, and the
worker applies what it queued."""

from __future__ import annotations

import asyncio
import json
from decimal import Decimal

import pytest
from redis import Redis
from rq import Queue

from payhooks.devtools.sandbox.nexudus import SandboxState
from payhooks.domain.events import Ignored, PaymentEvent
from payhooks.providers.receivers import build_providers
from payhooks.providers.stripe import sample as samples
from payhooks.settings import Settings
from payhooks.storage import redis_connect, redis_keys, trail
from payhooks.storage.jobs import JobFactory, queued_event
from payhooks.storage.record_once import (
    Accepted,
    RecordOnce,
    record_events,
    recorded,
    run_async,
    run_sync,
)
from payhooks.storage.trail import StoredWebhook, Trail, read_entries
from tests.support.delivery import deliver, queued_job
from tests.support.processes import RunWorker
from tests.support.settings import with_settings


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


def keep_trail(redis: Redis, key: str, kind: str, entries: list[str]) -> None:
    """A trail as a release keeps it: a list (releases before issue 21's string trails),
    or one string of lines (this release's)."""
    if kind == "list":
        redis.rpush(key, *entries)
    else:
        redis.set(key, "\n".join(entries))


@pytest.mark.parametrize("kind", ["list", "string"])
@pytest.mark.parametrize(("entries", "queued"), TRAILS.values(), ids=TRAILS.keys())
def test_the_script_and_recorded_read_the_trail_alike(
    settings: Settings, redis: Redis, queue: Queue, entries: list[str], queued: bool, kind: str
) -> None:
    webhook, [event] = stripe_event(settings, 42)
    key = redis_keys.trail(event.key)
    keep_trail(redis, key, kind, entries)
    assert recorded(redis, [event.key]) == [queued]
    expected = Accepted.DUPLICATE if queued else Accepted.QUEUED
    assert record_events(redis, recorder(settings), webhook, [event]) == [expected]
    assert queue.count == (0 if queued else 1)
    # Continued in its own kind, and read as one history, what was kept first.
    assert redis.type(key) == kind.encode()
    steps = Trail(redis, ttl_seconds=60).history(event.key)
    assert steps[-1]["stage"] == ("duplicate" if queued else "enqueued")
    assert len(steps) == len(read_entries(entries)) + (1 if queued else 2)


def type_and_fresh_ttl(redis: Redis, key: str, ttl: int) -> tuple[bytes, bool]:
    """The key's type, and whether its TTL was just set to ``ttl``: Redis counts it down
    meanwhile, a second or more on a busy machine (a worker's run between)."""
    return redis.type(key), ttl - 5 <= redis.ttl(key) <= ttl


def test_a_new_trail_is_one_string_every_writer_appends_to(
    settings: Settings, redis: Redis, queue: Queue, run_worker: RunWorker
) -> None:
    webhook, [event] = stripe_event(settings, 42)
    key = redis_keys.trail(event.key)
    record = recorder(settings)
    ttl = settings.event_ttl_seconds
    assert record_events(redis, record, webhook, [event]) == [Accepted.QUEUED]
    assert type_and_fresh_ttl(redis, key, ttl) == (b"string", True)
    # Each append sets the trail's TTL afresh, as RPUSH and EXPIRE did: the script's ...
    redis.expire(key, 100)
    assert record_events(redis, record, webhook, [event]) == [Accepted.DUPLICATE]
    assert type_and_fresh_ttl(redis, key, ttl) == (b"string", True)
    assert recorded(redis, [event.key]) == [True]
    # ... the worker's (Trail.append) ...
    redis.expire(key, 100)
    run_worker()
    assert type_and_fresh_ttl(redis, key, ttl) == (b"string", True)
    # ... and an ignored event's, written beside the script's calls.
    redis.expire(key, 100)
    ignored = Ignored(event.key.partition(":")[2], "charge.updated", "not a payment")
    run_sync(redis, record, record.calls(webhook, [], [ignored]))
    assert type_and_fresh_ttl(redis, key, ttl) == (b"string", True)
    lines = (redis.get(key) or b"").split(b"\n")
    steps = Trail(redis, ttl_seconds=60).history(event.key)
    assert [s["stage"] for s in steps] == [
        "received",
        "enqueued",
        "duplicate",
        "applied",
        "received",
        "ignored",
    ]
    assert len(lines) == 5  # received+enqueued is one line
    assert steps[-1]["reason"] == "not a payment"


def test_an_old_list_trail_stays_a_list_whoever_appends(settings: Settings, redis: Redis) -> None:
    webhook, [event] = stripe_event(settings, 42)
    key = redis_keys.trail(event.key)
    redis.rpush(key, '{"at":"2026-12-07T01:48:21.478Z","stage":"received"}')
    trail = Trail(redis, ttl_seconds=60)
    trail.append(event.key, "replayed", job_id="j")
    assert type_and_fresh_ttl(redis, key, 60) == (b"list", True)
    assert record_events(redis, recorder(settings), webhook, [event]) == [Accepted.DUPLICATE]
    assert type_and_fresh_ttl(redis, key, settings.event_ttl_seconds) == (b"list", True)
    assert [s["stage"] for s in trail.history(event.key)] == ["received", "replayed", "duplicate"]


# Ids whose event key fits in 64 bytes (the job holds the key) and description does not.
@pytest.mark.parametrize("event_id", ["evt_" + "é" * 20, "evt_" + "9" * 40], ids=["utf-8", "ascii"])
def test_a_long_events_job_stays_in_redis_compact_encoding(
    settings: Settings, redis: Redis, event_id: str
) -> None:
    # A description cut at 64 characters and ended by "…" (3 bytes) was 66 bytes, over
    # the 64 a compact hash holds: Authorize.Net's and Spreedly's jobs took 2.8 KB for 0.9.
    paid = samples.payment_intent(invoice_id=42, amount=Decimal("100.00"))
    deliver(settings, "stripe", samples.event("payment_intent.succeeded", paid, event_id=event_id))
    job = queued_job(redis, f"stripe:{event_id}")
    description = redis.hget(job.key, "description")
    assert description is not None
    assert len(description) <= 64
    assert description.decode().endswith("…")
    assert redis.object("encoding", job.key) in (b"ziplist", b"listpack")


def test_a_body_sent_again_and_again_grows_its_trails_only_so_far(
    settings: Settings, redis: Redis, queue: Queue, sandbox_state: SandboxState
) -> None:
    """A verified body can be sent again at will (a signature with no time limit, or within
    its limit). Each delivery noted on a string trail rewrote it whole, replicated and
    written to the AOF whole: quadratic in the deliveries. Past NOTES_UNTIL_BYTES, notes (a
    duplicate, an ignored event's arrival) only set the TTL afresh; what dedupe reads and
    the outcomes are still written."""
    webhook, events = stripe_event(settings, 42)
    ignored = [Ignored("evt_ignored", "customer.created", "not a payment")]
    record = recorder(settings)
    calls = record.calls(webhook, events, ignored)
    run_sync(redis, record, calls * 2_000)
    assert queue.count == 1
    limit = trail.NOTES_UNTIL_BYTES + 200  # the last note's lines
    for key in (events[0].key, "stripe:evt_ignored"):
        assert redis.strlen(redis_keys.trail(key)) < limit, key
    redis.expire(redis_keys.trail(events[0].key), 60)
    assert record_events(redis, record, webhook, events) == [Accepted.DUPLICATE]
    assert redis.ttl(redis_keys.trail(events[0].key)) > 60  # the redelivery's TTL, still
    Trail(redis, ttl_seconds=settings.event_ttl_seconds).append(events[0].key, "applied")
    assert Trail(redis, ttl_seconds=60).history(events[0].key)[-1]["stage"] == "applied"
    assert recorded(redis, [events[0].key]) == [True]


def test_a_new_event_runs_no_command_it_does_not_need(settings: Settings, redis: Redis) -> None:
    """The script runs once per event on the Redis every receiver and worker shares, and
    each command it runs costs that Redis CPU (issue 21's fourth pass): a new event of a
    new webhook reads one EXISTS (and its webhook's TYPE), its job copies RQ's shared fields
    from the template, and its trail is written without being read."""
    record = recorder(settings)
    first, events = stripe_event(settings, 41)
    record_events(redis, record, first, events)  # the template is written
    webhook, events = stripe_event(settings, 42)
    redis.config_resetstat()
    assert record_events(redis, record, webhook, events) == [Accepted.QUEUED]
    stats = redis.info("commandstats")
    calls = {
        name.removeprefix("cmdstat_"): int(stat["calls"])
        for name, stat in stats.items()
        if name not in ("cmdstat_config", "cmdstat_info")
    }
    assert calls == {
        "evalsha": 1,
        "type": 1,  # the webhook: never written over a hash
        "set": 2,  # the webhook, the trail
        "exists": 1,
        "copy": 1,
        "persist": 1,
        "hset": 1,
        "sadd": 1,
        "rpush": 1,
        "zadd": 2,  # the invoice's events, the unapplied payments
        "expire": 1,  # the invoice's events
    }


def test_a_job_holds_no_empty_field_and_its_event_in_few(settings: Settings, redis: Redis) -> None:
    """Each field of the job hash costs Redis CPU per event (a compact hash is searched
    whole for each one set, and each goes to the AOF and every replica): RQ's fields that
    it writes empty are left out, and the event's short values are one field."""
    webhook, [event] = stripe_event(settings, 42)
    record_events(redis, recorder(settings), webhook, [event])
    job = redis.hgetall(f"rq:job:{redis_keys.job_id(event.key)}")
    assert b"" not in job.values()
    # RQ's 11 that are not empty, and the event: its key, type, token, time, short values
    # (kind, amount, currency, invoice, Nexudus provider), method and details.
    assert len(job) == 11 + 7
    assert queued_event(redis, event.key) == event


def test_the_job_template_is_written_again_when_missing_and_passes_on_no_ttl(
    settings: Settings, redis: Redis, queue: Queue
) -> None:
    record = recorder(settings)
    jobs = []
    for invoice in (41, 42, 43):
        webhook, [event] = stripe_event(settings, invoice)
        record_events(redis, record, webhook, [event])
        jobs.append(f"rq:job:{redis_keys.job_id(event.key)}")
        [template] = redis.scan_iter(match=redis_keys.job_template("*"))
        if invoice == 41:
            redis.delete(template)  # flushed by hand, say: the next event writes it again
        elif invoice == 42:
            redis.expire(template, 600)  # given a TTL by hand: a queued job must not expire
    # Every job whole (RQ's fields and the event's), and none with a TTL.
    fields = [set(redis.hkeys(job)) for job in jobs]
    assert fields == [fields[0]] * 3
    assert [redis.ttl(job) for job in jobs] == [-1] * 3
    assert [job.get_status() for job in queue.get_jobs()] == ["queued"] * 3


def test_one_job_template_whatever_the_retention_and_one_per_job_configuration(
    settings: Settings, redis: Redis
) -> None:
    """The template holds RQ's fields, not the events' TTL: a retention changed leaves no
    template behind (it has no TTL of its own), a job timeout changed makes another."""
    for invoice, days in ((41, 30), (42, 90)):
        webhook, events = stripe_event(settings, invoice)
        changed = with_settings(settings, event_retention_days=days)
        record_events(redis, recorder(changed), webhook, events)
    assert len(list(redis.scan_iter(match=redis_keys.job_template("*")))) == 1
    webhook, events = stripe_event(settings, 43)
    longer = with_settings(settings, job_timeout_seconds=settings.job_timeout_seconds + 60)
    record_events(redis, recorder(longer), webhook, events)
    assert len(list(redis.scan_iter(match=redis_keys.job_template("*")))) == 2


def test_a_template_that_is_no_hash_is_written_again_and_leaves_no_job_key_behind(
    settings: Settings, redis: Redis, queue: Queue
) -> None:
    """The template set by hand to another type is copied all the same, and the job's own
    fields then fail. A script's earlier writes stay when a later command fails: a job key
    left holding that copy would make every delivery of the event a duplicate (and the
    reconcile scan take it as recorded), so the event would never be queued."""
    record = recorder(settings)
    webhook, events = stripe_event(settings, 41)
    record_events(redis, record, webhook, events)
    [template] = redis.scan_iter(match=redis_keys.job_template("*"))
    jobs = [f"rq:job:{redis_keys.job_id(events[0].key)}"]
    for invoice, spoil in ((42, redis.set), (43, redis.rpush)):
        redis.delete(template)
        spoil(template, "set by hand")
        webhook, events = stripe_event(settings, invoice)
        assert record_events(redis, record, webhook, events) == [Accepted.QUEUED]
        assert record_events(redis, record, webhook, events) == [Accepted.DUPLICATE]
        jobs.append(f"rq:job:{redis_keys.job_id(events[0].key)}")
        assert redis.type(template) == b"hash"
    fields = [set(redis.hkeys(job)) for job in jobs]
    assert fields == [fields[0]] * 3
    assert [job.get_status() for job in queue.get_jobs()] == ["queued"] * 3


def _batch_with_a_load_between(
    settings: Settings, redis: Redis
) -> tuple[RecordOnce, list[list[object]], list[PaymentEvent]]:
    """Two events' calls on a Redis without the script, another client's SCRIPT LOAD
    between them (Redis runs other clients' commands between a batch's): the first call
    answers NOSCRIPT, the second runs and queues its event."""
    redis.script_flush()
    record = recorder(settings)
    first_webhook, [first] = stripe_event(settings, 42)
    second_webhook, [second] = stripe_event(settings, 43)
    calls = [
        *record.calls(first_webhook, [first]),
        ["SCRIPT", "LOAD", record.source],
        *record.calls(second_webhook, [second]),
    ]
    return record, calls, [first, second]


def _stages(redis: Redis, event: PaymentEvent) -> list[str]:
    return [str(e["stage"]) for e in Trail(redis, ttl_seconds=60).history(event.key)]


def test_a_batch_that_meets_the_script_loaded_midway_says_queued_for_each_event(
    settings: Settings, redis: Redis, queue: Queue
) -> None:
    """Two scans at once on a Redis that had lost its scripts: the calls of one that ran
    after the other loaded it queued their events, and ran again they said duplicate (a
    scan counted 155 of 250 events queued, each queued once)."""
    record, calls, events = _batch_with_a_load_between(settings, redis)
    trips: list[int] = []

    answers = run_sync(redis, record, calls, round_trips=trips.append)

    assert record.accepted([answers[0], answers[2]], 2) == [Accepted.QUEUED, Accepted.QUEUED]
    assert queue.count == 2
    assert [_stages(redis, e) for e in events] == [["received", "enqueued"]] * 2
    assert trips == [3]


def test_the_receivers_batch_that_meets_the_script_loaded_midway_answers_queued(
    settings: Settings, redis: Redis, queue: Queue
) -> None:
    record, calls, events = _batch_with_a_load_between(settings, redis)

    async def run() -> list[object]:
        client = redis_connect.async_client(settings)
        try:
            return await run_async(client, record, calls)
        finally:
            await client.aclose()

    answers = asyncio.run(run())

    assert record.accepted([answers[0], answers[2]], 2) == [Accepted.QUEUED, Accepted.QUEUED]
    assert queue.count == 2
    assert [_stages(redis, e) for e in events] == [["received", "enqueued"]] * 2
