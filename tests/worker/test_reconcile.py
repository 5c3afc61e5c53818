"""Reconciliation (issue 19): `payhooks reconcile` reads Stripe's and GoCardless's own lists
of events from their stand-ins over HTTP, hands what no webhook brought to the record-once
hand-off, and a real RQ worker applies it to the Nexudus sandbox.

Fixtures: Stripe events are the shape of stripe/openapi ``fixtures3.json``'s Event (as the
tests' sample builder, payhooks/providers/stripe/sample.py, writes them) in Stripe's list
envelope (``object: list``, ``data``, ``has_more``, ``url``, from the API reference's
"List all events"); GoCardless's come from its API reference's "List events" example
(tests/fixtures/gocardless_list_events.json, which names its source).
"""

from __future__ import annotations

import argparse
import copy
import json
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from aiohttp.test_utils import TestClient
from redis import Redis
from rq import Queue, SimpleWorker

from payhooks.cli.ops import Ops
from payhooks.cli.reconcile import reconcile_providers, run_reconcile
from payhooks.devtools.sandbox.nexudus import SandboxState, invoice_record
from payhooks.providers.gocardless.stand_in import GoCardlessState, payment_record
from payhooks.providers.kit.listing import Window
from payhooks.providers.stripe.settings import StripeSettings
from payhooks.providers.stripe.stand_in import API_KEY, StripeState
from payhooks.settings import Settings
from payhooks.storage import redis_keys
from payhooks.storage.task_lease import TaskLease
from payhooks.storage.trail import Trail
from payhooks.storage.worker_metrics import WorkerMetrics
from tests.support import money
from tests.support.delivery import api_calls, deliver
from tests.support.paths import FIXTURES
from tests.support.settings import with_section
from workers import context
from workers.reconcile import reconcile_task
from workers.tasks import run

GC_LIST = json.loads((FIXTURES / "gocardless_list_events.json").read_text())


@pytest.fixture
def rc_settings(settings: Settings, sandbox: Any) -> Settings:
    """The tests' settings with Stripe's API key and base at its stand-in."""
    return with_section(settings, StripeSettings, api_key=API_KEY, api_base=sandbox.url)


@pytest.fixture
def rc_context(rc_settings: Settings, redis: Redis) -> Any:
    ctx = context.build_context(rc_settings)
    previous = context.install(ctx)
    yield ctx
    context.install(previous)
    ctx.close()


def last(hours: float = 2) -> Window:
    now = datetime.now(tz=UTC).replace(microsecond=0)
    return Window(now - timedelta(hours=hours), now + timedelta(seconds=5))


def stripe_paid(state: StripeState, invoice_id: int, *, delivered: bool = False) -> dict[str, Any]:
    intent = money.intent(invoice_id, "100.00")
    event = money.succeeded(intent)
    state.events.append(event)
    state.payment_intents[intent["id"]] = intent
    if not delivered:
        state.undelivered.add(event["id"])
    return event


def gocardless_confirmed(state: GoCardlessState, number: int, invoice_id: int) -> dict[str, Any]:
    """The API reference's event, for a payment of ours that the stand-in holds."""
    payment_id = f"PM{number:06d}"
    state.payments[payment_id] = payment_record(
        payment_id, amount_minor=10000, currency="EUR", invoice_id=invoice_id
    )
    event = copy.deepcopy(GC_LIST["events"][0])
    now = datetime.now(tz=UTC)
    event.update(
        id=f"EV{number:06d}",
        created_at=now.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z",
        links={"payment": payment_id},
    )
    state.events.append(event)
    return event


def drain(redis: Redis, settings: Settings) -> None:
    SimpleWorker([Queue(settings.queue_name, connection=redis)], connection=redis).work(burst=True)


def stages(redis: Redis, event_key: str) -> list[str]:
    return [str(e["stage"]) for e in Trail(redis, ttl_seconds=60).history(event_key)]


def row(rows: list[dict[str, Any]], provider: str) -> dict[str, Any]:
    return next(r for r in rows if r["provider"] == provider)


def test_missed_payments_are_recovered_and_seen_ones_are_not_queued_twice(
    rc_settings: Settings,
    redis: Redis,
    rc_context: Any,
    sandbox_state: SandboxState,
    stripe_state: StripeState,
    gocardless_state: GoCardlessState,
) -> None:
    missed = stripe_paid(stripe_state, 42)  # its webhook never came
    seen = stripe_paid(stripe_state, 43, delivered=True)
    assert [a.value for a in deliver(rc_settings, "stripe", seen)] == ["queued"]
    gocardless_confirmed(gocardless_state, 1, 44)

    rows = reconcile_providers(rc_settings, redis, last(), ["stripe", "gocardless", "liqpay"])

    assert {k: row(rows, "stripe")[k] for k in ("scanned", "seen", "queued", "result")} == {
        "scanned": 2,
        "seen": 1,
        "queued": 1,
        "result": "ok",
    }
    assert row(rows, "gocardless")["queued"] == 1
    assert row(rows, "liqpay")["result"].startswith("skipped: LiqPay has only a per-order")
    drain(redis, rc_settings)
    for invoice_id in (42, 43, 44):
        assert sandbox_state.invoices[invoice_id]["Paid"] is True, invoice_id
    trail = stages(redis, f"stripe:{missed['id']}")
    assert trail[:2] == ["polled", "enqueued"]
    assert trail[-1] == "applied"
    # The webhook's event: one job, and no entry at all from the scan.
    assert stages(redis, f"stripe:{seen['id']}")[:2] == ["received", "enqueued"]
    assert "duplicate" not in stages(redis, f"stripe:{seen['id']}")

    # A second run changes nothing: every event seen, nothing written, no Nexudus call.
    calls_before = len(api_calls(sandbox_state))
    again = reconcile_providers(rc_settings, redis, last(), ["stripe", "gocardless"])
    assert [(r["seen"], r["queued"]) for r in again] == [(2, 0), (1, 0)]
    assert Queue(rc_settings.queue_name, connection=redis).count == 0
    assert len(api_calls(sandbox_state)) == calls_before


def test_a_recovered_event_is_replayed_from_the_record_the_scan_kept(
    rc_settings: Settings,
    redis: Redis,
    rc_context: Any,
    sandbox_state: SandboxState,
    stripe_state: StripeState,
) -> None:
    # The invoice is missing when the recovered event is applied; once it exists, a person
    # replays the event as they would a webhook's (README, Replaying).
    missed = stripe_paid(stripe_state, 77)
    reconcile_providers(rc_settings, redis, last(), ["stripe"])
    drain(redis, rc_settings)
    key = f"stripe:{missed['id']}"
    assert stages(redis, key)[-1] == "failed"
    sandbox_state.invoices[77] = invoice_record(77)
    answer = Ops(rc_settings, redis).replay_event(key)
    assert answer.startswith(f"{key}: queued as ")
    drain(redis, rc_settings)
    assert sandbox_state.invoices[77]["PaidOn"] is not None
    assert "replayed" in stages(redis, key)
    assert stages(redis, key)[-1] == "applied"


def test_overlapping_runs_in_parallel_queue_each_event_once_across_many_pages(
    rc_settings: Settings, redis: Redis, stripe_state: StripeState, rc_context: Any
) -> None:
    events = [stripe_paid(stripe_state, 42 + n % 3) for n in range(250)]  # 3 pages of 100
    results: list[list[dict[str, Any]]] = []
    runs = [
        threading.Thread(
            target=lambda hours=hours: results.append(
                reconcile_providers(rc_settings, redis, last(hours), ["stripe"])
            )
        )
        for hours in (2, 3)
    ]
    for thread in runs:
        thread.start()
    for thread in runs:
        thread.join(timeout=60)
    assert len(results) == 2
    assert sum(r[0]["queued"] for r in results) == 250
    assert all(r[0]["scanned"] == 250 and r[0]["result"] == "ok" for r in results)
    for event in events:
        assert stages(redis, f"stripe:{event['id']}").count("enqueued") == 1
    listed = [r for r in stripe_state.requests if r.startswith("GET /v1/events")]
    # Per run: 1 page of the first 20 types (none there), 3 of the rest (2 starting_after).
    assert len(listed) == 8
    assert sum("starting_after=" in r for r in listed) == 4


def test_a_scan_failing_mid_window_resumes_from_its_cursor_and_waits_out_429(
    rc_settings: Settings,
    redis: Redis,
    stripe_state: StripeState,
    rc_context: Any,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for n in range(150):
        stripe_paid(stripe_state, 42 + n % 3)
    # The first type group (no payment_intent.succeeded) and a page of the second are
    # read; the second page fails.
    stripe_state.event_faults = [200, 200, 500]
    window = last()
    args = argparse.Namespace(
        providers=["stripe"],
        since=window.since.isoformat(),
        until=window.until.isoformat(),
        dry_run=False,
        json=True,
    )
    assert run_reconcile(rc_settings, args) == 1
    first = json.loads(capsys.readouterr().out)["providers"][0]
    assert first["queued"] == 100
    assert first["result"].startswith("unavailable:")
    stripe_state.requests.clear()

    # The same window again: from the committed page, after two 429s waited for.
    stripe_state.event_faults = [429, 429]
    rows = reconcile_providers(rc_settings, redis, window, ["stripe"], sleep=lambda s: None)
    assert rows[0]["result"] == "ok"
    assert rows[0]["queued"] == 50
    assert rows[0]["scanned"] == 50
    listed = [r for r in stripe_state.requests if r.startswith("GET /v1/events")]
    assert len(listed) == 3  # 429, 429, then the second page
    assert all("starting_after=" in r for r in listed)
    # Finished: the window's cursor is gone, so a later run reads it afresh.
    assert not list(redis.scan_iter(match="payhooks:reconcile:*"))


def test_the_dry_run_writes_nothing(
    rc_settings: Settings, redis: Redis, stripe_state: StripeState
) -> None:
    stripe_paid(stripe_state, 42)
    rows = reconcile_providers(rc_settings, redis, last(), ["stripe"], dry_run=True)
    assert rows[0]["queued"] == 1
    assert not list(redis.scan_iter(match="payhooks:event:*"))
    assert Queue(rc_settings.queue_name, connection=redis).count == 0


async def test_the_scheduled_quick_scan_reads_only_undelivered_events_and_is_counted(
    rc_settings: Settings,
    redis: Redis,
    stripe_state: StripeState,
    rc_context: Any,
    sandbox_state: SandboxState,
    client: TestClient,
) -> None:
    missed = stripe_paid(stripe_state, 42)
    stripe_paid(stripe_state, 43, delivered=True)  # delivered: the quick scan skips it
    task = rc_context.tasks[reconcile_task("stripe", thorough=False)]
    assert task.interval_seconds == 900
    assert rc_context.tasks[reconcile_task("stripe", thorough=True)].interval_seconds == 86400
    lease = TaskLease(redis, task.name, seconds=10, cursor_ttl_seconds=60)
    ran = run(task, lease, WorkerMetrics(redis))
    assert ran["result"] == "ok"
    assert (ran["scanned"], ran["queued"]) == (1, 1)
    assert all("delivery_success=false" in r for r in stripe_state.requests if "/v1/events" in r)
    assert redis.get(redis_keys.task_cursor(task.name)) == b""  # the window finished
    drain(redis, rc_settings)
    assert sandbox_state.invoices[42]["Paid"] is True
    assert stages(redis, f"stripe:{missed['id']}")[-1] == "applied"

    metrics = await (await client.get("/metrics")).text()
    assert 'payhooks_reconcile_events_total{provider="stripe",result="queued"} 1.0' in metrics
    assert 'payhooks_reconcile_last_success_timestamp_seconds{provider="stripe"}' in metrics


def test_a_scheduled_run_finishes_the_window_an_earlier_run_left(
    rc_settings: Settings, redis: Redis, stripe_state: StripeState, rc_context: Any
) -> None:
    for n in range(150):
        stripe_paid(stripe_state, 42 + n % 3)
    task = rc_context.tasks[reconcile_task("stripe", thorough=False)]
    metrics = WorkerMetrics(redis)
    stripe_state.event_faults = [200, 200, 500]

    def lease() -> TaskLease:
        return TaskLease(redis, task.name, seconds=10, cursor_ttl_seconds=60)

    assert run(task, lease(), metrics)["result"] == "unavailable"
    saved = json.loads(redis.get(redis_keys.task_cursor(task.name)) or b"{}")
    assert saved["at"]
    assert json.loads(saved["at"])["after"]
    stripe_state.requests.clear()
    ran = run(task, lease(), metrics)
    assert ran["result"] == "ok"
    assert ran["queued"] == 50  # the rest of the old window; the new one finds all seen
    assert ran["seen"] == 150
    first = next(r for r in stripe_state.requests if "/v1/events" in r)
    assert "starting_after=" in first


def test_the_readme_walk_through_recovers_a_payment_in_the_sandbox(
    rc_settings: Settings, redis: Redis, sandbox: Any, sandbox_state: SandboxState, rc_context: Any
) -> None:
    """The README's `payhooks dev` steps, against the sandbox over HTTP."""
    payment = {"id": "PM0001", "amount": 10000, "currency": "EUR", "invoice_id": 42}
    assert httpx.post(f"{sandbox.url}/_sandbox/gocardless/payments", json=payment).is_success
    event = {"id": "EV0001", "payment": "PM0001", "action": "confirmed"}
    assert httpx.post(f"{sandbox.url}/_sandbox/gocardless/events", json=event).is_success
    rows = reconcile_providers(rc_settings, redis, last(1), ["gocardless"])
    assert (rows[0]["scanned"], rows[0]["queued"]) == (1, 1)
    drain(redis, rc_settings)
    assert sandbox_state.invoices[42]["Paid"] is True
    again = reconcile_providers(rc_settings, redis, last(1), ["gocardless"])
    assert (again[0]["seen"], again[0]["queued"]) == (1, 0)


def test_the_readme_walk_through_recovers_paypal_and_spreedly_payments(
    rc_settings: Settings, redis: Redis, sandbox: Any, sandbox_state: SandboxState, rc_context: Any
) -> None:
    """The README's PayPal and Spreedly steps: a capture and a purchase no webhook brought."""
    payment = {"invoice": 43, "amount": "100.00", "currency": "EUR"}
    assert httpx.post(f"{sandbox.url}/_sandbox/paypal/events", json=payment).is_success
    payment = {"invoice": 44, "amount": "100.00", "currency": "EUR"}
    assert httpx.post(f"{sandbox.url}/_sandbox/spreedly/transactions", json=payment).is_success
    rows = reconcile_providers(rc_settings, redis, last(1), ["paypal", "spreedly"])
    assert [(r["provider"], r["queued"], r["result"]) for r in rows] == [
        ("paypal", 1, "ok"),
        ("spreedly", 1, "ok"),
    ]
    drain(redis, rc_settings)
    assert sandbox_state.invoices[43]["Paid"] is True
    assert sandbox_state.invoices[44]["Paid"] is True
