"""Failure handling, the event trail and safe replay, as ops people use them."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from redis import Redis
from rq import Queue
from rq.job import Job
from rq.registry import FailedJobRegistry, StartedJobRegistry

from payhooks.cli.ops import Filters, Ops, parse_since
from payhooks.devtools.process_tree import kill_tree
from payhooks.devtools.sandbox.nexudus import INVOICES, TOKENS, Fault, SandboxState, invoice_record
from payhooks.providers.stripe import sample as samples
from payhooks.providers.stripe.sample import paid_event
from payhooks.providers.stripe.settings import StripeSettings
from payhooks.settings import Settings
from payhooks.storage import redis_keys
from tests.support.delivery import deliver, finished, writes
from tests.support.processes import (
    PAYHOOKS,
    RunWorker,
    Started,
    run_burst_worker,
    worker_env,
)
from tests.support.settings import with_settings
from workers import context
from workers.worker_process import HEARTBEAT_SECONDS


def job_id(event: dict[str, Any]) -> str:
    return redis_keys.job_id(f"stripe:{event['id']}")


@pytest.fixture
def ops(settings: Settings, redis: Redis) -> Ops:
    return Ops(settings, redis)


@pytest.fixture
def rq_retries_only(
    settings: Settings, worker_context: context.WorkerContext
) -> Iterator[Settings]:
    """No in-place retries, no breaker: each transient failure is one RQ attempt, as counted
    here."""
    changed = with_settings(settings, job_retries_in_place=0, nexudus_breaker_min_calls=1000)
    ctx = context.build_context(changed)
    context.install(ctx)  # over worker_context's, which puts none back once done
    yield changed
    ctx.close()


class TestTransientFailures:
    @pytest.mark.parametrize(
        "fault",
        [
            Fault("GET", f"{INVOICES}/42", 502, times=2),
            Fault("POST", TOKENS, 429, times=5, retry_after=0),
            Fault("PUT", INVOICES, 409, times=5, retry_after=0),
            Fault("GET", f"{INVOICES}/42", 0, times=2),  # connection dropped
            Fault("GET", f"{INVOICES}/42", 503, times=1, delay=6),  # slower than the timeout
        ],
        ids=["5xx", "429", "409", "connection", "timeout"],
    )
    def test_retried_then_applied(
        self,
        settings: Settings,
        sandbox_state: SandboxState,
        run_worker: RunWorker,
        queue: Queue,
        fault: Fault,
    ) -> None:
        sandbox_state.faults.append(fault)
        event = paid_event(42)
        deliver(settings, "stripe", event)
        run_worker()
        assert sandbox_state.invoices[42]["PaidOn"] is not None
        assert len(sandbox_state.tokens) == 1
        assert finished(queue.connection, f"stripe:{event['id']}") == "applied"


class TestPermanentFailures:
    def test_401_after_re_authentication(
        self, settings: Settings, sandbox_state: SandboxState, run_worker: RunWorker, queue: Queue
    ) -> None:
        sandbox_state.faults.append(Fault("GET", f"{INVOICES}/42", 401, times=2))
        event = paid_event(42)
        deliver(settings, "stripe", event)
        run_worker()
        failure = Job.fetch(job_id(event), connection=queue.connection).meta["failure"]
        assert failure["error_class"] == "NexudusPermanentError"
        assert "unauthorised after re-authenticating" in failure["reason"]
        assert failure["attempt"] == 1
        assert sandbox_state.grants == 2  # the first token, then one re-authentication

    def test_wrong_credentials(
        self, settings: Settings, sandbox_state: SandboxState, redis: Redis, queue: Queue
    ) -> None:
        wrong = with_settings(settings, nexudus_password="not-the-password")
        event = paid_event(42)
        deliver(wrong, "stripe", event)
        run_burst_worker(wrong, redis, queue)
        failure = Job.fetch(job_id(event), connection=redis).meta["failure"]
        assert "authentication refused (invalid_grant)" in failure["reason"]
        assert "not-the-password" not in json.dumps(failure)
        assert failure["attempt"] == 1

    def test_unknown_invoice_reference(
        self, settings: Settings, run_worker: RunWorker, queue: Queue
    ) -> None:
        event = paid_event(None, metadata={"nexudus_invoice_number": "INV-NOPE"})
        deliver(settings, "stripe", event)
        run_worker()
        failure = Job.fetch(job_id(event), connection=queue.connection).meta["failure"]
        assert failure["error_class"] == "InvoiceNotFound"
        assert "invoice number 'INV-NOPE'" in failure["reason"]


class TestReplay:
    def test_failed_job_applies_once_the_cause_is_fixed(
        self, settings: Settings, sandbox_state: SandboxState, run_worker: RunWorker, ops: Ops
    ) -> None:
        event = paid_event(77)
        deliver(settings, "stripe", event)
        run_worker()
        [failed], _ = ops.failed_jobs(Filters())
        assert (failed.error_class, failed.invoice, failed.event_id) == (
            "InvoiceNotFound",
            "77",
            event["id"],
        )

        sandbox_state.invoices[77] = invoice_record(77)  # someone fixes the cause
        replayed, skipped = ops.replay([failed.job_id])
        assert (replayed, skipped) == ([failed.job_id], [])
        run_worker()
        assert sandbox_state.invoices[77]["PaidOn"] is not None
        assert ops.failed_jobs(Filters()) == ([], [])

    def test_replayed_job_gets_its_attempts_back(
        self,
        settings: Settings,
        sandbox_state: SandboxState,
        rq_retries_only: Settings,
        run_worker: RunWorker,
        ops: Ops,
    ) -> None:
        sandbox_state.faults.append(
            Fault("GET", f"{INVOICES}/42", 500, times=settings.job_max_attempts)
        )
        event = paid_event(42)
        deliver(settings, "stripe", event)
        run_worker()
        [failed], _ = ops.failed_jobs(Filters())
        assert failed.attempts == settings.job_max_attempts
        sandbox_state.faults.append(Fault("GET", f"{INVOICES}/42", 500, times=3))
        ops.replay([failed.job_id])
        run_worker()  # three more failures fit in the fresh attempts
        assert sandbox_state.invoices[42]["PaidOn"] is not None

    def test_replaying_an_applied_event_changes_nothing(
        self, settings: Settings, sandbox_state: SandboxState, run_worker: RunWorker, ops: Ops
    ) -> None:
        event = paid_event(42)
        deliver(settings, "stripe", event)
        run_worker()
        before = json.dumps(sandbox_state.invoices[42], sort_keys=True)
        sandbox_state.calls.clear()
        message = ops.replay_event(f"stripe:{event['id']}")
        assert "queued" in message
        run_worker()
        assert writes(sandbox_state) == []
        assert json.dumps(sandbox_state.invoices[42], sort_keys=True) == before
        assert len(sandbox_state.tokens) == 1

    def test_bulk_replay_with_filters(
        self, settings: Settings, sandbox_state: SandboxState, run_worker: RunWorker, ops: Ops
    ) -> None:
        missing = [paid_event(i) for i in (90, 91)]
        short = paid_event(42, currency="GBP")  # the invoice is in EUR
        deliver(settings, "stripe", *missing, short)
        run_worker()
        jobs, _ = ops.failed_jobs(Filters())
        assert len(jobs) == 3
        not_found, _ = ops.failed_jobs(Filters(error_class="InvoiceNotFound"))
        assert sorted(j.invoice for j in not_found) == ["90", "91"]
        only_91, _ = ops.failed_jobs(Filters(invoice="91"))
        assert [j.event_id for j in only_91] == [missing[1]["id"]]
        assert ops.failed_jobs(Filters(since=parse_since("1h")))[0] == jobs
        assert ops.failed_jobs(Filters(provider="gocardless"))[0] == []

        for invoice_id in (90, 91):
            sandbox_state.invoices[invoice_id] = invoice_record(invoice_id)
        replayed, _ = ops.replay(j.job_id for j in not_found)
        run_worker()
        assert len(replayed) == 2
        assert all(sandbox_state.invoices[i]["PaidOn"] for i in (90, 91))
        [left], _ = ops.failed_jobs(Filters())
        assert left.error_class == "AmountMismatch"

    def test_cli_dry_run_replays_nothing_and_json_lists(
        self,
        settings: Settings,
        sandbox_state: SandboxState,
        run_worker: RunWorker,
        queue: Queue,
    ) -> None:
        deliver(settings, "stripe", paid_event(90), paid_event(91))
        run_worker()
        env = worker_env(settings)
        listed = subprocess.run(  # noqa: PLW1510
            [*PAYHOOKS, "failed", "list", "--json"],
            env=env,
            capture_output=True,
            text=True,
            timeout=30,
        )
        rows = json.loads(listed.stdout)
        assert sorted(r["invoice"] for r in rows) == ["90", "91"]
        assert {r["error_class"] for r in rows} == {"InvoiceNotFound"}

        dry = subprocess.run(  # noqa: PLW1510
            [*PAYHOOKS, "failed", "replay", "--all", "--invoice", "90", "--dry-run"],
            env=env,
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert dry.returncode == 0
        assert "1 failed job(s) to replay" in dry.stdout
        assert "INVOICE" in dry.stdout.splitlines()[1]  # aligned table header
        assert len(FailedJobRegistry(queue=queue)) == 2

        refused = subprocess.run(  # noqa: PLW1510
            [*PAYHOOKS, "failed", "replay", "--all"],
            env=env,
            capture_output=True,
            text=True,
            timeout=30,
            stdin=subprocess.DEVNULL,
        )
        assert refused.returncode == 1  # no terminal to ask, no --yes: nothing done
        assert len(FailedJobRegistry(queue=queue)) == 2

        done = subprocess.run(  # noqa: PLW1510
            [*PAYHOOKS, "failed", "replay", "--all", "--yes", "--json"],
            env=env,
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert len(json.loads(done.stdout)["replayed"]) == 2

    def test_expired_job_is_skipped_and_replay_event_recovers_it(
        self,
        settings: Settings,
        sandbox_state: SandboxState,
        run_worker: RunWorker,
        ops: Ops,
        redis: Redis,
    ) -> None:
        event = paid_event(88)
        deliver(settings, "stripe", event)
        run_worker()
        redis.delete(f"rq:job:{job_id(event)}")  # the job hash has expired meanwhile
        jobs, expired = ops.failed_jobs(Filters())
        assert (jobs, expired) == ([], [job_id(event)])
        replayed, skipped = ops.replay([job_id(event)])
        assert replayed == []
        assert "expired" in skipped[0]

        sandbox_state.invoices[88] = invoice_record(88)
        assert "queued" in ops.replay_event(f"stripe:{event['id']}")
        run_worker()
        assert sandbox_state.invoices[88]["PaidOn"] is not None

    def test_replay_event_reads_a_redelivery_kept_after_the_first_delivery_expired(
        self,
        settings: Settings,
        sandbox_state: SandboxState,
        run_worker: RunWorker,
        ops: Ops,
        redis: Redis,
    ) -> None:
        # Each delivery's body is kept EVENT_RETENTION_DAYS from its own arrival; the trail
        # as long from its last entry: the first body may be gone, a redelivery's kept.
        event = paid_event(None, metadata={"invoice": "42"})
        deliver(settings, "stripe", event)
        deliver(settings, "stripe", json.dumps(event, indent=1).encode())  # another body
        event_key = f"stripe:{event['id']}"
        first, again = [e["webhook"] for e in ops.trail.history(event_key) if e.get("webhook")]
        assert first != again
        redis.delete(first)  # expired
        fixed = Ops(with_settings(settings, invoice_metadata_key="invoice"), redis)
        assert "queued" in fixed.replay_event(event_key)
        run_worker()
        assert sandbox_state.invoices[42]["PaidOn"] is not None

    def test_replay_event_renormalises_an_event_that_was_ignored(
        self,
        settings: Settings,
        sandbox_state: SandboxState,
        run_worker: RunWorker,
        ops: Ops,
        redis: Redis,
    ) -> None:
        # An older configuration looked in another metadata key and ignored the event.
        event = paid_event(None, metadata={"invoice": "42"})
        deliver(settings, "stripe", event)
        assert ops.trail.history(f"stripe:{event['id']}")[-1]["stage"] == "ignored"
        fixed = Ops(with_settings(settings, invoice_metadata_key="invoice"), redis)
        assert "queued" in fixed.replay_event(f"stripe:{event['id']}")
        run_worker()
        assert sandbox_state.invoices[42]["PaidOn"] is not None


class TestTrail:
    def test_trace_of_an_invoice_with_several_events(
        self,
        settings: Settings,
        sandbox_state: SandboxState,
        rq_retries_only: Settings,
        run_worker: RunWorker,
        ops: Ops,
    ) -> None:
        intent = samples.payment_intent(invoice_id=42, amount=Decimal("100.00"))
        first = samples.event("payment_intent.processing", dict(intent, status="processing"))
        second = samples.event("payment_intent.succeeded", intent)
        deliver(settings, "stripe", first)
        run_worker()
        deliver(settings, "stripe", second, second)  # the second one delivered twice
        sandbox_state.faults.append(Fault("PUT", INVOICES, 503))
        run_worker()

        assert ops.trail.events_for_invoice(42) == [
            f"stripe:{first['id']}",
            f"stripe:{second['id']}",
        ]
        stages = [e["stage"] for e in ops.trail.history(f"stripe:{second['id']}")]
        assert stages == ["received", "enqueued", "duplicate", "retrying", "applied"]
        applied = ops.trail.history(f"stripe:{second['id']}")[-1]
        assert applied["paid_on_set"] is True
        assert applied["token_id"]
        first_stages = [e["stage"] for e in ops.trail.history(f"stripe:{first['id']}")]
        assert first_stages == ["received", "enqueued", "token_only"]

        env = worker_env(settings)
        traced = subprocess.run(  # noqa: PLW1510
            [*PAYHOOKS, "trace", "42"], env=env, capture_output=True, text=True, timeout=30
        )
        assert traced.returncode == 0
        assert f"stripe:{first['id']}" in traced.stdout
        assert "applied" in traced.stdout
        assert "retrying" in traced.stdout
        assert "duplicate" in traced.stdout

    def test_stored_webhook_redacts_card_details(
        self, settings: Settings, ops: Ops, redis: Redis
    ) -> None:
        intent = samples.payment_intent(invoice_id=42, amount=Decimal("100.00"))
        event = samples.event("charge.succeeded", samples.charge(intent))
        deliver(settings, "stripe", event)
        [entry, *_] = ops.trail.history(f"stripe:{event['id']}")
        stored = ops.trail.webhook(entry["webhook"])
        assert stored is not None
        assert stored["redacted"] is True
        body = json.loads(stored["body"])
        card = body["data"]["object"]["payment_method_details"]["card"]
        assert card["last4"] == "[redacted]"
        assert card["brand"] == "visa"
        assert b"4242" not in stored["body"]

    def test_unredacted_webhook_keeps_its_exact_bytes_and_signature(
        self, settings: Settings, ops: Ops, redis: Redis
    ) -> None:
        import asyncio

        from aiohttp.test_utils import TestClient, TestServer

        from service.app import create_app

        event = paid_event(42)
        body, headers = samples.signed(event, settings.provider(StripeSettings).webhook_secrets[0])

        async def post() -> None:
            async with TestClient(TestServer(create_app(settings))) as client:
                assert (
                    await client.post("/webhooks/stripe", data=body, headers=headers)
                ).status == 200

        asyncio.run(post())
        [entry, *_] = ops.trail.history(f"stripe:{event['id']}")
        stored = ops.trail.webhook(entry["webhook"])
        assert stored is not None
        assert stored["body"] == body
        assert stored["redacted"] is False
        assert stored["headers"] == {"Stripe-Signature": headers["Stripe-Signature"]}


@pytest.mark.slow
def test_worker_killed_mid_job_is_recovered_not_lost(
    settings: Settings,
    sandbox_state: SandboxState,
    redis: Redis,
    queue: Queue,
    run_worker: RunWorker,
    processes: Started,
) -> None:
    # The token POST lands, then hangs: the worker (and its work horse) die meanwhile.
    sandbox_state.faults.append(Fault("POST", TOKENS, 503, delay=30, after_apply=True))
    event = paid_event(42)
    # A short job timeout: the dead job's invoice lock (held for the job's own timeout, as
    # queued, plus a margin) lapses with it.
    deliver(with_settings(settings, job_timeout_seconds=10), "stripe", event)
    worker = processes.start([*PAYHOOKS, "worker"], worker_env(settings))
    deadline = time.monotonic() + 20
    while not sandbox_state.tokens and time.monotonic() < deadline:
        time.sleep(0.05)
    assert sandbox_state.tokens, "the job never reached the token POST"
    kill_tree(worker.pid)  # node loss: the worker and its work horse together
    worker.wait()

    registry = StartedJobRegistry(queue=queue)
    assert job_id(event) in registry.get_job_ids()  # not silently gone: still "started"
    # Found abandoned once the dead worker's last heartbeat lapses: within 65 s, not RQ's 90.
    [(_, lapses_at)] = redis.zrange(registry.key, 0, -1, withscores=True)
    assert lapses_at <= time.time() + HEARTBEAT_SECONDS + 60
    # A live worker's maintenance does this then (within WORKER_MAINTENANCE_SECONDS); here
    # time is moved on instead.
    registry.cleanup(timestamp=time.time() + 3600)
    # The dead horse's invoice lock lapses on its own: nobody is left to release it.
    deadline = time.monotonic() + 60
    while redis.exists(redis_keys.invoice_lock(42)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not redis.exists(redis_keys.invoice_lock(42)), "the dead job's lock never lapsed"
    run_worker()
    assert len(sandbox_state.tokens) == 1  # the landed POST was found, not repeated
    assert sandbox_state.invoices[42]["PaidOn"] is not None
    assert finished(redis, f"stripe:{event['id']}") == "applied"


class TestReplaySafety:
    def test_replayed_job_no_longer_expires_while_queued(
        self, settings: Settings, run_worker: RunWorker, ops: Ops, redis: Redis
    ) -> None:
        event = paid_event(90)
        deliver(settings, "stripe", event)
        run_worker()
        assert redis.ttl(f"rq:job:{job_id(event)}") > 0  # a failed job expires
        ops.replay([job_id(event)])
        assert redis.ttl(f"rq:job:{job_id(event)}") == -1  # a queued one must not

    def test_purge_leaves_a_job_replayed_since_it_was_listed(
        self, settings: Settings, run_worker: RunWorker, ops: Ops, queue: Queue
    ) -> None:
        event = paid_event(90)
        deliver(settings, "stripe", event)
        run_worker()
        listed, _ = ops.failed_jobs(Filters())
        ops.replay([job_id(event)])  # someone replays it meanwhile
        assert ops.purge([j.job_id for j in listed]) == 0
        assert queue.job_ids == [job_id(event)]

    def test_cli_dry_run_with_job_ids_replays_nothing(
        self, settings: Settings, run_worker: RunWorker, queue: Queue
    ) -> None:
        event = paid_event(90)
        deliver(settings, "stripe", event)
        run_worker()
        result = subprocess.run(  # noqa: PLW1510
            [*PAYHOOKS, "failed", "replay", job_id(event), "--dry-run"],
            env=worker_env(settings),
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert result.returncode == 0
        assert "would replay" in result.stdout
        assert len(FailedJobRegistry(queue=queue)) == 1


def test_events_are_found_by_any_provider_id_without_provider_settings(
    settings: Settings, redis: Redis
) -> None:
    bare = Ops(Settings(redis_url=settings.redis_url), redis)  # no provider configured
    bare.trail.append("epay:3212292612", "received")
    bare.trail.append("generic/bank:msg_1a2b", "received")
    assert bare.find_event("3212292612") == "epay:3212292612"  # digits: an event, not an invoice
    assert bare.find_event("epay:3212292612") == "epay:3212292612"
    assert bare.find_event("msg_1a2b") == "generic/bank:msg_1a2b"
    assert bare.find_event("nope") is None
    traced = subprocess.run(  # noqa: PLW1510
        [*PAYHOOKS, "trace", "3212292612"],
        env=worker_env(settings),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert traced.returncode == 0
    assert "epay:3212292612" in traced.stdout
