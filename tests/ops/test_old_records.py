"""Records written by earlier versions stay readable and replayable after the storage changes
of issue 21 (bodies compressed, small job results, finished jobs not kept).

tests/fixtures/records_0_1_0/records.json holds what 0.1.0's own code wrote to Redis (its
capture.py, run with that commit): two queued Stripe events, one of them with card details
(kept redacted), and a verified webhook kept as unprocessed. records_60fe52f/records.json
holds the same, written by the release of issue 21's first pass (main 60fe52f: one string
per webhook, zstd bodies, the event in its job's hash). Here they are restored as they
were, and the ops commands and the worker of this version use them; a trail they began
is continued by this version's entries (written shorter) and reads as one history, and an
event they recorded is a duplicate when delivered again to this version.
"""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Callable
from typing import Any

import pytest
from redis import Redis
from rq import Queue
from rq.job import Job

from payhooks.cli.ops import Ops
from payhooks.cli.ops_render import print_trail
from payhooks.cli.unprocessed import UnprocessedWebhooks
from payhooks.devtools.sandbox.nexudus import SandboxState, invoice_record
from payhooks.providers.receivers import build_providers
from payhooks.providers.stripe import sample as stripe_samples
from payhooks.settings import Settings
from payhooks.storage import redis_keys
from payhooks.storage.jobs import queued_event
from payhooks.storage.record_once import Accepted, recorded
from payhooks.storage.trail import origin_digest
from tests.support.delivery import deliver
from tests.support.paths import FIXTURES

#: Each set of records, by the version that wrote it.
RECORDS = {
    "0.1.0": FIXTURES / "records_0_1_0" / "records.json",
    "60fe52f": FIXTURES / "records_60fe52f" / "records.json",
    "8cd8f52": FIXTURES / "records_8cd8f52" / "records.json",
}
PAID = "stripe:evt_0_2_paid"
CARD = "stripe:evt_0_2_card"
INVOICE = 4201


def restore(redis: Redis, version: str) -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = json.loads(RECORDS[version].read_text())["records"]

    def raw(value: str) -> bytes:
        return base64.b64decode(value)

    for record in records:
        key, kind, value = record["key"], record["type"], record["value"]
        if kind == "hash":
            redis.hset(key, mapping={k: raw(v) for k, v in value.items()})
        elif kind == "string":
            redis.set(key, raw(value))
        elif kind == "list":
            redis.rpush(key, *[raw(v) for v in value])
        elif kind == "set":
            redis.sadd(key, *[raw(v) for v in value])
        elif kind == "zset":
            redis.zadd(key, {raw(member): score for member, score in value})
    return records


@pytest.fixture(params=sorted(RECORDS))
def old_records(
    request: pytest.FixtureRequest, redis: Redis, sandbox_state: SandboxState
) -> list[dict[str, Any]]:
    sandbox_state.invoices[INVOICE] = invoice_record(INVOICE)
    return restore(redis, request.param)


@pytest.fixture
def ops(settings: Settings, redis: Redis) -> Ops:
    return Ops(settings, redis)


def webhook_of(ops: Ops, event_key: str) -> dict[str, Any]:
    key = next(e["webhook"] for e in ops.trail.history(event_key) if e.get("webhook"))
    stored = ops.trail.webhook(key)
    assert stored is not None
    return stored


@pytest.mark.usefixtures("old_records")
def test_old_bodies_read_back_as_stored_and_card_fields_stay_redacted(ops: Ops) -> None:
    paid = webhook_of(ops, PAID)
    assert json.loads(paid["body"])["id"] == "evt_0_2_paid"
    assert paid["redacted"] is False
    assert paid["headers"] == {}
    card = webhook_of(ops, CARD)
    assert card["redacted"] is True
    assert b"4242" not in card["body"]
    assert json.loads(card["body"])["data"]["object"]["payment_method_details"]["card"] == {
        "brand": "visa",
        "last4": "[redacted]",
        "exp_month": "[redacted]",
        "exp_year": "[redacted]",
    }


@pytest.mark.usefixtures("old_records")
def test_old_trails_are_traced_and_found_by_event_id_and_invoice(ops: Ops) -> None:
    assert ops.find_event("evt_0_2_paid") == PAID
    assert [e["stage"] for e in ops.trail.history(PAID)] == ["received", "enqueued"]
    assert sorted(ops.trail.events_for_invoice(INVOICE)) == [CARD, PAID]


def test_old_jobs_are_applied_by_this_worker_and_shown(
    old_records: list[dict[str, Any]],
    ops: Ops,
    run_worker: Callable[[], None],
    sandbox_state: SandboxState,
) -> None:
    run_worker()
    assert sandbox_state.invoices[INVOICE]["Paid"] is True
    stages = {key: [e["stage"] for e in ops.trail.history(key)] for key in (PAID, CARD)}
    assert sorted(stages[PAID][-1:] + stages[CARD][-1:]) == ["already_applied", "applied"]
    history = ops.history(redis_keys.job_id(PAID))
    assert history.status == "finished"
    assert history.event_key == PAID


def test_an_old_event_is_replayed_from_its_old_body(
    old_records: list[dict[str, Any]],
    ops: Ops,
    run_worker: Callable[[], None],
    sandbox_state: SandboxState,
) -> None:
    run_worker()
    # Its finished job makes way for the replayed one, re-normalised from the 0.1.0 body.
    assert ops.replay_event(PAID) == f"{PAID}: queued as {redis_keys.job_id(PAID)}"
    run_worker()
    assert ops.trail.history(PAID)[-1]["stage"] == "already_applied"
    assert sandbox_state.invoices[INVOICE]["Paid"] is True


@pytest.mark.usefixtures("old_records")
def test_an_old_unprocessed_webhook_is_listed_shown_and_replayed(ops: Ops) -> None:
    webhooks = UnprocessedWebhooks(ops)
    [listed] = webhooks.listed()
    assert listed.provider == "stripe"
    assert "amount_received" in listed.reason
    stored = webhooks.stored(listed)
    assert json.loads(stored["body"])["id"] == "evt_0_2_broken"
    # Still unreadable by the current normaliser: it says why and stays listed.
    replayed, lines = webhooks.replay(listed)
    assert not replayed
    assert "still cannot be normalised" in lines[0]
    assert [w.id for w in webhooks.listed()] == [listed.id]


def test_an_old_trail_continued_by_this_release_reads_as_one_history(
    old_records: list[dict[str, Any]], ops: Ops, run_worker: Callable[[], None], redis: Redis
) -> None:
    run_worker()
    kept = redis.lrange(redis_keys.trail(PAID), 0, -1)
    # Begun as JSON by the release that recorded it, continued in this release's lines.
    assert [entry.startswith(b"{") for entry in kept] == [True, True, False]
    history = ops.trail.history(PAID)
    assert [e["stage"] for e in history] == ["received", "enqueued", "applied"]
    assert [e["at"] for e in history] == sorted(e["at"] for e in history)
    assert history[-1]["token_created"] is True
    assert history[-1]["paid_on_set"] is True
    shown = ops.history(redis_keys.job_id(PAID))
    assert (shown.status, shown.runs, shown.trail) == ("finished", 1, history)
    out = io.StringIO()
    print_trail(ops.trails([PAID]), out, as_json=True)
    assert json.loads(out.getvalue()) == {PAID: history}


def test_an_old_event_delivered_again_to_this_release_is_a_duplicate(
    old_records: list[dict[str, Any]],
    ops: Ops,
    run_worker: Callable[[], None],
    redis: Redis,
    settings: Settings,
    queue: Queue,
) -> None:
    run_worker()
    # Its job and 0.1.0's event record gone, as they expire: its trail alone says queued.
    redis.delete(Job.key_for(redis_keys.job_id(PAID)), redis_keys.event(PAID))
    body = webhook_of(ops, PAID)["body"]
    assert recorded(redis, [PAID]) == [True]
    assert deliver(settings, "stripe", body) == [Accepted.DUPLICATE]
    assert queue.count == 0
    received, *_, duplicate = ops.trail.history(PAID)
    assert duplicate["stage"] == "duplicate"
    # The old delivery's key (all 256 bits of the digest) next to this one's (128): both
    # read back the same body.
    old_reference, new_reference = received["webhook"], duplicate["webhook"]
    assert len(old_reference) == len(redis_keys.webhook("")) + 64
    assert new_reference == redis_keys.webhook(origin_digest(body))
    for reference in (old_reference, new_reference):
        assert (ops.trail.webhook(reference) or {})["body"] == body
    # And replayed from either: the old entry names the body it came in.
    assert ops.replay_event(PAID) == f"{PAID}: queued as {redis_keys.job_id(PAID)}"


def test_an_old_list_trail_stays_a_list_and_a_new_trail_is_a_string(
    old_records: list[dict[str, Any]],
    ops: Ops,
    run_worker: Callable[[], None],
    redis: Redis,
    settings: Settings,
    queue: Queue,
) -> None:
    run_worker()
    redis.delete(Job.key_for(redis_keys.job_id(PAID)), redis_keys.event(PAID))
    assert deliver(settings, "stripe", webhook_of(ops, PAID)["body"]) == [Accepted.DUPLICATE]
    assert redis.type(redis_keys.trail(PAID)) == b"list"
    stages = [e["stage"] for e in ops.trail.history(PAID)]
    assert stages == ["received", "enqueued", "applied", "duplicate"]
    # An event this release records first: one string, and a duplicate when delivered again.
    fresh = stripe_samples.paid_event(INVOICE + 1)
    assert deliver(settings, "stripe", fresh, fresh) == [Accepted.QUEUED, Accepted.DUPLICATE]
    fresh_key = f"stripe:{fresh['id']}"
    assert redis.type(redis_keys.trail(fresh_key)) == b"string"
    assert recorded(redis, [PAID, fresh_key]) == [True, True]
    assert queue.count == 1


def test_replay_event_over_a_queued_old_job_leaves_none_of_its_old_event_behind(
    ops: Ops, redis: Redis, settings: Settings
) -> None:
    """A job queued before issue 21's fourth pass holds its event a field per value; since,
    the object is left out when it is the token, and absent values always were. So
    `replay-event` of a queued job, writing the event as the current code reads it over
    the old one, must drop the old fields the new event does not write, or the job runs
    with a mix of both (here, what an older normaliser read as the object and a number)."""
    restore(redis, "60fe52f")
    job_key = Job.key_for(redis_keys.job_id(PAID))
    redis.hset(job_key, mapping={"e.object": "ch_read_by_an_older_release", "e.number": "INV-9"})
    answer = ops.replay_event(PAID)
    assert answer.endswith("is already queued; it will use the new event"), answer
    stored = webhook_of(ops, PAID)
    [current] = build_providers(settings)["stripe"].normalise(stored["body"], stored["headers"])
    assert queued_event(redis, PAID) == current
