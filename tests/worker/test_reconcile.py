"""Reconciliation (issue 19): `payhooks reconcile` reads Stripe's and GoCardless's own lists
of events from their stand-ins over HTTP, hands what no webhook brought to the record-once
hand-off, and a real RQ worker applies it to the Nexudus sandbox. `payhooks audit` holds
the same lists against the Nexudus sandbox (over HTTP) and our records, its calls taken
from the workers' limiter; the gauge counts payments paid long ago and not applied.

Fixtures: Stripe events are the shape of stripe/openapi ``fixtures3.json``'s Event (as the
tests' sample builder, payhooks/providers/stripe/sample.py, writes them) in Stripe's list
envelope (``object: list``, ``data``, ``has_more``, ``url``, from the API reference's
"List all events"); GoCardless's come from its API reference's "List events" example
(tests/fixtures/gocardless_list_events.json, which names its source).
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import io
import json
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from aiohttp.test_utils import TestClient
from redis import Redis
from rq import Queue, SimpleWorker

from payhooks.cli.audit import run_audit
from payhooks.cli.ops import Ops
from payhooks.cli.reconcile import reconcile_providers, run_reconcile
from payhooks.cli.unprocessed import UnprocessedWebhooks
from payhooks.devtools.sandbox.nexudus import SandboxState, invoice_record
from payhooks.providers.authorizenet.settings import AuthorizeNetSettings
from payhooks.providers.braintree.settings import BraintreeSettings
from payhooks.providers.ezidebit.settings import EziDebitSettings
from payhooks.providers.forte.settings import ForteSettings
from payhooks.providers.gocardless.settings import GoCardlessSettings
from payhooks.providers.gocardless.stand_in import GoCardlessState, payment_record, refund_record
from payhooks.providers.kit.listing import Window
from payhooks.providers.paypal.settings import PayPalSettings
from payhooks.providers.spreedly.settings import SpreedlySettings
from payhooks.providers.stripe.settings import StripeSettings
from payhooks.providers.stripe.stand_in import API_KEY, StripeState
from payhooks.settings import Settings
from payhooks.storage import redis_keys
from payhooks.storage.task_lease import TaskLease
from payhooks.storage.trail import StoredPoll, Trail
from payhooks.storage.unprocessed import READ_BY_LIST, queue_keep
from payhooks.storage.worker_metrics import RECONCILE_LAST_SUCCESS, WorkerMetrics
from tests.support import money
from tests.support.delivery import api_calls, deliver
from tests.support.paths import FIXTURES
from tests.support.settings import with_section, with_settings
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


def stripe_paid(
    state: StripeState, invoice_id: int, *, delivered: bool = False, amount: str = "100.00"
) -> dict[str, Any]:
    intent = money.intent(invoice_id, amount)
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


def reconcile_args(
    *providers: str, json: bool = True, until: str | None = None
) -> argparse.Namespace:
    return argparse.Namespace(
        providers=list(providers), since="2h", until=until, dry_run=False, json=json
    )


#: Each provider section with a list, and what its lister cannot do without.
LIST_CREDENTIALS: dict[type[Any], dict[str, Any]] = {
    StripeSettings: {"api_key": None},
    GoCardlessSettings: {"access_token": None},
    BraintreeSettings: {"keys": ()},
    AuthorizeNetSettings: {"login_id": None},
    ForteSettings: {"location_ids": ()},
    PayPalSettings: {"client_id": None},
    SpreedlySettings: {"environment_key": None},
    EziDebitSettings: {"digital_key": None},
}


def without_lists(settings: Settings, *, but: type[Any] | None = None) -> Settings:
    """The settings with every provider's list credentials gone (but ``but``'s)."""
    for section, gone in LIST_CREDENTIALS.items():
        if section is not but:
            settings = with_section(settings, section, **gone)
    return settings


def test_a_run_with_nothing_to_scan_fails_and_says_why(
    settings: Settings, redis: Redis, capsys: pytest.CaptureFixture[str]
) -> None:
    # Providers named that have no list to read: nothing was checked, so no success.
    assert run_reconcile(settings, reconcile_args("liqpay", "stripe")) == 1
    error = json.loads(capsys.readouterr().out)["error"]
    assert error["code"] == "nothing_to_scan"
    assert "liqpay: LiqPay has only a per-order status call" in error["message"]
    assert "stripe: STRIPE_API_KEY is not set" in error["message"]
    # None configured with a list (each list's credentials gone): the same, in words on stderr.
    assert run_reconcile(without_lists(settings), reconcile_args(json=False)) == 1
    said = capsys.readouterr()
    assert said.out == ""
    assert said.err.startswith("payhooks: nothing to reconcile: none of the providers configured")


def test_a_default_run_passes_when_what_can_be_scanned_was(
    rc_settings: Settings, redis: Redis, stripe_state: StripeState
) -> None:
    # Every enabled provider by default: LiqPay, ePay, IPN and operators' systems have no
    # list and never will; their rows say so, and the run (cron'd, scheduled) still passes.
    # Named, the same providers fail the run: they were asked for and not scanned.
    only_stripe = without_lists(rc_settings, but=StripeSettings)
    said = io.StringIO()
    assert run_reconcile(only_stripe, reconcile_args(json=False), out=said) == 0
    # Fits 100 columns, each skipped provider's reason wrapped whole, never cut.
    lines = said.getvalue().splitlines()
    assert max(len(line) for line in lines) <= 100
    assert "…" not in said.getvalue()
    assert "reconcile PayPal's REST events)" in " ".join(" ".join(lines).split())
    assert run_reconcile(only_stripe, reconcile_args("stripe", "liqpay")) == 1


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
    rc_settings: Settings,
    redis: Redis,
    sandbox: Any,
    sandbox_state: SandboxState,
    rc_context: Any,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The README's `payhooks dev` steps, against the sandbox over HTTP."""
    payment = {"id": "PM0001", "amount": 10000, "currency": "EUR", "invoice_id": 42}
    assert httpx.post(f"{sandbox.url}/_sandbox/gocardless/payments", json=payment).is_success
    event = {"id": "EV0001", "payment": "PM0001", "action": "confirmed"}
    assert httpx.post(f"{sandbox.url}/_sandbox/gocardless/events", json=event).is_success
    # GoCardless's event names no invoice (its payment does): never received, invoice unknown.
    soon = last(1).until.isoformat()  # GoCardless dates events to the millisecond
    assert run_audit(rc_settings, reconcile_args("gocardless", until=soon)) == 1
    [found] = json.loads(capsys.readouterr().out)["discrepancies"]
    assert (found["event"], found["status"]) == ("gocardless:EV0001", "never_received")
    rows = reconcile_providers(rc_settings, redis, last(1), ["gocardless"])
    assert (rows[0]["scanned"], rows[0]["queued"]) == (1, 1)
    drain(redis, rc_settings)
    assert sandbox_state.invoices[42]["Paid"] is True
    again = reconcile_providers(rc_settings, redis, last(1), ["gocardless"])
    assert (again[0]["seen"], again[0]["queued"]) == (1, 0)
    # Applied: the audit finds it on invoice 42 (the invoice its job tied it to).
    assert run_audit(rc_settings, reconcile_args("gocardless", until=soon)) == 0
    assert json.loads(capsys.readouterr().out)["counts"]["applied"] == 1


# -- payhooks audit, and the gauge of payments not applied ---------------------------------


def audit(
    settings: Settings, capsys: pytest.CaptureFixture[str], **kw: Any
) -> tuple[int, dict[str, Any]]:
    status = run_audit(settings, reconcile_args("stripe"), **kw)
    return status, json.loads(capsys.readouterr().out)


def by_event(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {d["event"]: d for d in report["discrepancies"]}


def test_the_audit_finds_a_payment_never_received_and_one_held_by_a_guard_then_is_clean(
    rc_settings: Settings,
    redis: Redis,
    rc_context: Any,
    sandbox_state: SandboxState,
    stripe_state: StripeState,
    capsys: pytest.CaptureFixture[str],
) -> None:
    sandbox_state.invoices[60] = invoice_record(60, CurrencyCode="GBP")
    missed = stripe_paid(stripe_state, 42)  # its webhook never came
    applied = stripe_paid(stripe_state, 43)
    held = stripe_paid(stripe_state, 60)  # EUR for a GBP invoice: the amount guard
    deliver(rc_settings, "stripe", applied, held)
    drain(redis, rc_settings)

    status, report = audit(rc_settings, capsys)

    assert status == 1
    assert report["counts"]["applied"] == 1
    found = by_event(report)
    assert set(found) == {f"stripe:{missed['id']}", f"stripe:{held['id']}"}
    never = found[f"stripe:{missed['id']}"]
    assert (never["status"], never["invoice"], never["amount"]) == (
        "never_received",
        "42",
        "100.00 EUR",
    )
    assert never["action"].startswith("`payhooks reconcile stripe --since")
    guarded = found[f"stripe:{held['id']}"]
    assert guarded["status"] == "held"
    assert guarded["why"].startswith("AmountMismatch: ")
    assert "differs from the invoice's GBP" in guarded["why"]
    assert report["nexudus_calls"] > 0
    assert run_audit(rc_settings, reconcile_args("stripe", json=False)) == 1
    said = capsys.readouterr().out
    assert f"NEVER RECEIVED  stripe:{missed['id']}  invoice 42  100.00 EUR\n  why: " in said
    assert f"HELD  stripe:{held['id']}  invoice 60  100.00 EUR\n  why: AmountMismatch: " in said
    assert all(len(line) <= 100 for line in said.splitlines())

    # What the README says to do: reconcile recovers the first; the invoice corrected and
    # the job replayed applies the second.
    reconcile_providers(rc_settings, redis, last(), ["stripe"])
    sandbox_state.invoices[60]["CurrencyCode"] = "EUR"
    Ops(rc_settings, redis).replay([redis_keys.job_id(f"stripe:{held['id']}")])
    drain(redis, rc_settings)

    status, report = audit(rc_settings, capsys)
    assert (status, report["discrepancies"]) == (0, [])
    assert report["counts"]["applied"] == 3
    assert run_audit(rc_settings, reconcile_args(json=False)) == 0
    said = " ".join(capsys.readouterr().out.split())
    assert said.startswith("Audit ")
    assert "3 payments (3 applied), no discrepancies; " in said
    assert "Not audited (no list to read; --json says why): " in said


def test_the_audit_takes_its_nexudus_calls_from_the_workers_limiter_and_waits_its_turn(
    rc_settings: Settings,
    redis: Redis,
    sandbox_state: SandboxState,
    stripe_state: StripeState,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for invoice_id in (42, 43, 44):
        stripe_paid(stripe_state, invoice_id)
    # 4 calls a minute: the audit's share is 2, so its third call must wait.
    tight = with_settings(rc_settings, nexudus_calls_per_minute=4, nexudus_min_interval_ms=0)
    shared = redis_keys.rate_bucket("calls-minute")
    own = redis_keys.rate_bucket("audit-calls-minute")
    waits: list[tuple[float, int, int]] = []

    def sleep(seconds: float) -> None:
        # The minute passes at once: what the windows held when the audit had to wait.
        waits.append((seconds, redis.zcard(own), redis.zcard(shared)))
        redis.delete(own, shared)

    sandbox_state.calls.clear()
    status, report = audit(tight, capsys, sleep=sleep)

    assert status == 1  # three payments never received
    assert [d["status"] for d in report["discrepancies"]] == ["never_received"] * 3
    reads = [c for c in sandbox_state.calls if c.path.startswith("/api/billing/")]
    assert len(reads) == 6  # per payment: its invoice, its token search
    assert len(waits) == 2  # 6 reads, 2 a minute
    assert all(0 < s <= 62 and n == 2 for s, n, _ in waits)
    # Every read was counted in the workers' own window too.
    assert sum(n for _, n, _ in waits) + redis.zcard(own) == 6
    assert [m for _, n, m in waits] == [2, 2]
    # What it says it made: those reads and the bearer token's POST /api/token (which the
    # sandbox does not log among the API's calls).
    assert report["nexudus_calls"] == len(sandbox_state.calls) + 1 == 7


def test_the_audit_counts_a_partial_payment_and_finds_paid_on_cleared_in_nexudus(
    rc_settings: Settings,
    redis: Redis,
    rc_context: Any,
    sandbox_state: SandboxState,
    stripe_state: StripeState,
    capsys: pytest.CaptureFixture[str],
) -> None:
    partial = stripe_paid(stripe_state, 44, amount="40.00")  # of 100.00 due
    # The same payment announced again by another event: its job finds it counted.
    again = {**partial, "id": partial["id"] + "x"}
    stripe_state.events.append(again)
    sandbox_state.invoices[61] = invoice_record(61)
    cleared = stripe_paid(stripe_state, 61)
    sandbox_state.invoices[62] = invoice_record(62)
    covered = stripe_paid(stripe_state, 62, amount="40.00")
    deliver(rc_settings, "stripe", partial, again, cleared, covered)
    drain(redis, rc_settings)
    sandbox_state.invoices[61]["PaidOn"] = None  # someone reopened it in Nexudus
    sandbox_state.invoices[62]["TotalAmount"] = 40.0  # corrected: now paid in full, no PaidOn

    status, report = audit(rc_settings, capsys)

    assert status == 1
    assert report["counts"]["partial"] == 1  # one payment, however many events
    found = by_event(report)
    assert set(found) == {f"stripe:{cleared['id']}", f"stripe:{covered['id']}"}
    assert found[f"stripe:{cleared['id']}"]["status"] == "missing"
    assert found[f"stripe:{cleared['id']}"]["why"] == (
        "our trail says applied, but Nexudus shows no PaidOn"
    )
    assert found[f"stripe:{covered['id']}"]["why"] == (
        "our trail says partially_paid, but Nexudus shows no PaidOn"
    )


async def test_the_gauge_counts_payments_paid_over_30_minutes_ago_until_their_jobs_end(
    rc_settings: Settings,
    redis: Redis,
    rc_context: Any,
    sandbox_state: SandboxState,
    stripe_state: StripeState,
    client: TestClient,
    capsys: pytest.CaptureFixture[str],
) -> None:
    async def gauge() -> str:
        exposed = await (await client.get("/metrics")).text()
        return next(
            line for line in exposed.splitlines() if line.startswith("payhooks_unapplied_payments ")
        )

    sandbox_state.invoices[60] = invoice_record(60, CurrencyCode="GBP")
    late = stripe_paid(stripe_state, 42)
    late["created"] -= 31 * 60  # paid at Stripe 31 minutes ago: its age is its own date's
    held = stripe_paid(stripe_state, 60)
    held["created"] -= 45 * 60
    fresh = stripe_paid(stripe_state, 43)  # paid just now: not late yet
    # As the receiver hands them off (deliver runs its own event loop).
    await asyncio.to_thread(deliver, rc_settings, "stripe", late, held, fresh)

    assert await gauge() == "payhooks_unapplied_payments 2.0"
    assert redis.zcard(redis_keys.UNAPPLIED) == 3
    # The audit agrees: those two are overdue (no worker ran), the third is in flight.
    status, report = await asyncio.to_thread(audit, rc_settings, capsys)
    assert status == 1
    assert report["counts"]["in_flight"] == 1
    overdue = sorted(d["event"] for d in report["discrepancies"] if d["status"] == "overdue")
    assert overdue == sorted([f"stripe:{late['id']}", f"stripe:{held['id']}"])

    drain(redis, rc_settings)  # applied, applied, and held by the amount guard (failed)

    assert await gauge() == "payhooks_unapplied_payments 0.0"
    assert redis.zcard(redis_keys.UNAPPLIED) == 0  # nothing kept once jobs end
    assert sandbox_state.invoices[42]["PaidOn"] is not None


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


def test_the_audit_never_takes_a_partial_refund_for_a_whole_payment_it_cannot_price(
    rc_settings: Settings,
    redis: Redis,
    rc_context: Any,
    sandbox_state: SandboxState,
    gocardless_state: GoCardlessState,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """GoCardless's events carry no amount: 10.00 refunded of a 100.00 payment that was
    never applied leaves 90.00 kept and invoice 42 unpaid, which the audit must report,
    not count as "reversed" (all of it went back)."""
    listed = gocardless_confirmed(gocardless_state, 7, 42)  # its webhook never came
    gocardless_state.refunds["RF000007"] = refund_record(
        "RF000007", payment_id=str(listed["links"]["payment"]), amount_minor=1000, currency="EUR"
    )
    refund = {
        **copy.deepcopy(GC_LIST["events"][0]),
        "id": "EV900007",
        "resource_type": "refunds",
        "action": "created",
        "links": {"refund": "RF000007"},
    }
    deliver(rc_settings, "gocardless", {"events": [refund]})
    drain(redis, rc_settings)  # the refund's job: 10.00 EUR of PM000007 went back

    soon = last(1).until.isoformat()
    assert run_audit(rc_settings, reconcile_args("gocardless", until=soon)) == 1
    report = json.loads(capsys.readouterr().out)
    [found] = report["discrepancies"]
    assert (found["event"], found["status"]) == (f"gocardless:{listed['id']}", "never_received")
    assert report["counts"]["reversed"] == 0
    assert sandbox_state.invoices[42]["PaidOn"] is None

    # Recovered, it counts 90.00 of 100.00: partial. Refunded the rest, the ledger's
    # 100.00 tells the audit that all of it went back.
    reconcile_providers(rc_settings, redis, last(1), ["gocardless"])
    drain(redis, rc_settings)
    assert run_audit(rc_settings, reconcile_args("gocardless", until=soon)) == 0
    assert json.loads(capsys.readouterr().out)["counts"]["partial"] == 1
    gocardless_state.refunds["RF000008"] = refund_record(
        "RF000008", payment_id=str(listed["links"]["payment"]), amount_minor=9000, currency="EUR"
    )
    rest = {**refund, "id": "EV900008", "links": {"refund": "RF000008"}}
    deliver(rc_settings, "gocardless", {"events": [rest]})
    drain(redis, rc_settings)
    assert run_audit(rc_settings, reconcile_args("gocardless", until=soon)) == 0
    assert json.loads(capsys.readouterr().out)["counts"]["reversed"] == 1


def test_a_scheduled_scan_that_could_not_read_a_record_is_not_a_success(
    rc_settings: Settings, redis: Redis, stripe_state: StripeState, rc_context: Any
) -> None:
    """A record the normaliser cannot read may be a payment no webhook brought: as for
    `payhooks reconcile` (exit 1), the provider's last success is not moved, so
    PayhooksReconcileStale says so instead of a counter nobody alerts on."""
    unreadable = stripe_paid(stripe_state, 42)
    unreadable["data"]["object"]["amount_received"] = "100.00"  # not minor units
    task = rc_context.tasks[reconcile_task("stripe", thorough=False)]
    lease = TaskLease(redis, task.name, seconds=10, cursor_ttl_seconds=60)

    ran = run(task, lease, WorkerMetrics(redis))

    assert (ran["scanned"], ran["errors"], ran["queued"]) == (1, 1, 0)
    assert redis.hget(RECONCILE_LAST_SUCCESS, "stripe") is None
    stripe_state.events.clear()
    assert run(task, lease, WorkerMetrics(redis))["errors"] == 0
    assert redis.hget(RECONCILE_LAST_SUCCESS, "stripe") is not None


def test_a_held_payment_whose_event_names_no_invoice_is_shown_on_the_invoice_its_job_found(
    rc_settings: Settings,
    redis: Redis,
    rc_context: Any,
    sandbox_state: SandboxState,
    gocardless_state: GoCardlessState,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # GoCardless's event names only the payment; its job reads the invoice from the API.
    # Held by the amount guard (EUR paid, a GBP invoice), the row names that invoice.
    sandbox_state.invoices[60] = invoice_record(60, CurrencyCode="GBP")
    held = gocardless_confirmed(gocardless_state, 8, 60)
    reconcile_providers(rc_settings, redis, last(), ["gocardless"])
    drain(redis, rc_settings)

    soon = last(1).until.isoformat()  # GoCardless dates events to the millisecond
    assert run_audit(rc_settings, reconcile_args("gocardless", until=soon)) == 1
    [finding] = json.loads(capsys.readouterr().out)["discrepancies"]
    assert (finding["event"], finding["status"], finding["invoice"]) == (
        f"gocardless:{held['id']}",
        "held",
        "60",
    )
    assert finding["why"].startswith("AmountMismatch: ")


def test_a_listed_record_nothing_can_read_is_kept_for_a_person(
    rc_settings: Settings, redis: Redis, stripe_state: StripeState
) -> None:
    """It may be a payment no webhook brought, and the next scans' windows pass it by: it
    is kept and listed with the receiver's unreadable webhooks, where a person sees it."""
    unreadable = stripe_paid(stripe_state, 42)
    unreadable["data"]["object"]["amount_received"] = "100.00"  # not minor units
    stripe_paid(stripe_state, 43)

    [scanned] = reconcile_providers(rc_settings, redis, last(), ["stripe"])

    assert (scanned["queued"], scanned["errors"]) == (1, 1)
    assert scanned["result"] == "1 record(s) unreadable: kept, see `payhooks unprocessed list`"
    kept_ones = UnprocessedWebhooks(Ops(rc_settings, redis))
    [kept] = kept_ones.listed()
    assert (kept.provider, kept.source) == ("stripe", "list")
    assert "amount" in kept.reason
    assert json.loads(kept_ones.stored(kept)["body"])["id"] == unreadable["id"]
    # Listed again by the next scan: one entry still.
    reconcile_providers(rc_settings, redis, last(), ["stripe"])
    assert [k.id for k in kept_ones.listed()] == [kept.id]
    # The current code still cannot read it: the replay says why, and it stays listed.
    replayed, lines = kept_ones.replay(kept)
    assert not replayed
    assert "still cannot be normalised" in lines[0]
    assert [k.id for k in kept_ones.listed()] == [kept.id]


def test_a_kept_listed_record_the_code_now_reads_is_replayed_and_applied_once(
    rc_settings: Settings,
    redis: Redis,
    stripe_state: StripeState,
    sandbox_state: SandboxState,
    rc_context: Any,
) -> None:
    # As a scan of a release that could not read it kept it; this release reads it.
    event = money.succeeded(money.intent(44, "100.00"))
    body = json.dumps(event).encode()
    with redis.pipeline() as pipe:
        queue_keep(
            pipe,
            StoredPoll.of("stripe", body, None),
            "MalformedPayload in payhooks/providers/stripe/receiver.py:1 (x)",
            ttl_seconds=600,
            now=time.time(),
            read_by=READ_BY_LIST,
        )
        pipe.execute()
    kept_ones = UnprocessedWebhooks(Ops(rc_settings, redis))
    [kept] = kept_ones.listed()

    replayed, lines = kept_ones.replay(kept)
    assert replayed, lines
    drain(redis, rc_settings)

    assert sandbox_state.invoices[44]["PaidOn"] is not None
    assert stages(redis, f"stripe:{event['id']}") == ["polled", "replayed", "applied"]
    origin = Trail(redis, ttl_seconds=60).history(f"stripe:{event['id']}")[0]
    assert origin["origin"] == kept.key
    assert kept_ones.listed() == []
    # Listed again by a scan now: seen, no second job.
    stripe_state.events.append(event)
    [again] = reconcile_providers(rc_settings, redis, last(), ["stripe"])
    assert (again["queued"], again["seen"]) == (0, 1)
