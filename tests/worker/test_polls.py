"""The second front door: a poll-only provider (declared in tests/support/poll_provider.py
with a settings section, a poller and a table entry: no receiver, no sample) whose API is
read over loopback by a scheduled run, its events recorded once by record-once's sync
runner and applied by a real RQ worker; seen by `trace`, `failed`, `replay-event` and the
metrics as polled, never as received."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from redis import Redis
from rq import Queue, SimpleWorker

from payhooks.cli.main import main
from payhooks.cli.ops import Ops
from payhooks.devtools.sandbox.nexudus import SandboxState, invoice_record
from payhooks.devtools.sandbox.server import ThreadedServer
from payhooks.settings import Intake, Settings
from payhooks.storage import redis_keys
from payhooks.storage.task_lease import TaskLease
from payhooks.storage.trail import Trail
from payhooks.storage.worker_metrics import WorkerMetrics
from tests.support.poll_provider import (
    NAME,
    POLL_TABLE,
    ListPollSettings,
    ListState,
    list_app,
    payment,
    with_poll,
)
from tests.support.settings import with_settings
from workers import context
from workers.polls import poll_task
from workers.scheduler import Scheduler
from workers.tasks import run

TASK = poll_task(NAME)


@pytest.fixture
def list_state() -> ListState:
    return ListState()


@pytest.fixture
def list_api(list_state: ListState) -> Iterator[ThreadedServer]:
    server = ThreadedServer(lambda: list_app(list_state)).start()
    yield server
    list_state.released = True  # a stalled request lets go, so the server can stop
    server.stop()


@pytest.fixture
def poll_settings(settings: Settings, list_api: ThreadedServer) -> Settings:
    return with_settings(with_poll(settings, list_api.url), task_lease_seconds=2)


@pytest.fixture
def poll_context(poll_settings: Settings, redis: Redis) -> Iterator[context.WorkerContext]:
    ctx = context.build_context(poll_settings, POLL_TABLE)
    previous = context.install(ctx)
    yield ctx
    context.install(previous)
    ctx.close()


def drain(queue: Queue, redis: Redis) -> None:
    SimpleWorker([queue], connection=redis).work(burst=True)


def stages(redis: Redis, event_key: str) -> list[str]:
    return [str(entry["stage"]) for entry in Trail(redis, ttl_seconds=60).history(event_key)]


def test_a_poll_only_provider_declares_no_receiver_and_no_url() -> None:
    assert ListPollSettings.intakes() == {Intake.POLL: "api_url"}
    section = ListPollSettings(api_url="http://127.0.0.1:1")
    assert section.intake_enabled(Intake.POLL)
    assert not section.intake_enabled(Intake.WEBHOOK)
    assert section.urls(NAME) == []  # no /webhooks/testpoll
    assert ListPollSettings.enabling_variable() == "TESTPOLL_API_URL"


async def test_polled_events_are_applied_and_seen_like_webhooks_but_named_polled(
    poll_settings: Settings,
    redis: Redis,
    queue: Queue,
    sandbox_state: SandboxState,
    list_state: ListState,
    poll_context: context.WorkerContext,
    client: TestClient,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Three payments over two pages, one for an invoice Nexudus does not have, one refused.
    list_state.payments += [
        payment(1, 42),
        payment(2, 43),
        payment(3, 404),
        payment(4, 44, status="failed"),
    ]
    scheduler = Scheduler(redis, poll_settings, poll_context.tasks)
    scheduler.queue_due(time.time())
    drain(queue, redis)  # the run, then the payments it queued

    assert sandbox_state.invoices[42]["Paid"] is True
    assert sandbox_state.invoices[43]["Paid"] is True
    assert list_state.requests == [None, "p2"]  # two pages, the second from the first's end
    assert redis.get(redis_keys.task_cursor(TASK)) == b"p4"
    paid = f"{NAME}:p1-paid"
    trail = Trail(redis, ttl_seconds=60).history(paid)
    assert [e["stage"] for e in trail][:2] == ["polled", "enqueued"]
    assert trail[-1]["stage"] == "applied"
    assert trail[0]["origin"].startswith("payhooks:polled:")
    assert not any("webhook" in entry or entry["stage"] == "received" for entry in trail)
    assert stages(redis, f"{NAME}:p4-failed") == ["polled", "ignored"]

    # `trace`, `failed list` and `failed show` read them as they read a webhook's.
    monkeypatch.setenv("REDIS_URL", poll_settings.require_redis())
    capsys.readouterr()
    assert main(["trace", "p1-paid"]) == 0
    traced = capsys.readouterr().out
    assert "polled" in traced
    assert "origin=payhooks:polled:" in traced
    assert "received" not in traced
    assert main(["failed", "list", "--wide"]) == 0
    listed = capsys.readouterr().out
    assert f"{NAME}:p3-paid" in listed or "p3-paid" in listed
    assert "InvoiceNotFound" in listed
    assert main(["failed", "show", "p3-paid"]) == 0
    shown = capsys.readouterr().out
    assert "polled" in shown
    assert "InvoiceNotFound" in shown

    # `replay-event` reads the kept record again with the poller's current code.
    sandbox_state.invoices[404] = invoice_record(404)
    ops = Ops(poll_settings, redis)
    assert "queued as" in ops.replay_event(f"{NAME}:p3-paid", pollers=POLL_TABLE)
    drain(queue, redis)
    assert sandbox_state.invoices[404]["Paid"] is True
    replayed = [
        e
        for e in Trail(redis, ttl_seconds=60).history(f"{NAME}:p3-paid")
        if e["stage"] == "replayed"
    ]
    assert replayed[-1]["source"] == "polled record"

    # The next run reads on from the cursor: only what is new is queued.
    list_state.payments.append(payment(5, 404))
    ran = run(
        poll_context.tasks[TASK],
        TaskLease(redis, TASK, seconds=2, cursor_ttl_seconds=60),
        WorkerMetrics(redis),
    )
    assert ran["result"] == "ok"
    assert list_state.requests[-1] == "p4"
    assert ran["queued"] == 1
    assert ran["duplicate"] == 0

    metrics = await (await client.get("/metrics")).text()
    assert f'payhooks_polled_events_total{{outcome="queued",provider="{NAME}"}} 4.0' in metrics
    assert f'payhooks_polled_events_total{{outcome="ignored",provider="{NAME}"}} 1.0' in metrics
    assert f'payhooks_task_runs_total{{result="ok",task="{TASK}"}} 2.0' in metrics
    assert f'payhooks_task_last_success_timestamp_seconds{{task="{TASK}"}}' in metrics
    # A poll is no request: the receiver's webhook counters never saw one.
    assert f'provider="{NAME}"' not in "".join(
        line for line in metrics.splitlines() if line.startswith("payhooks_events_total")
    )


def test_a_run_that_outlives_its_lease_writes_nothing_beside_the_next(
    poll_settings: Settings,
    redis: Redis,
    list_state: ListState,
    poll_context: context.WorkerContext,
) -> None:
    list_state.payments += [payment(n, 42 + n % 3) for n in range(1, 6)]
    list_state.stall_after = "p2"  # the first run commits a page, then hangs on the next
    task = poll_context.tasks[TASK]
    metrics = WorkerMetrics(redis)

    def lease() -> TaskLease:
        return TaskLease(redis, TASK, seconds=2, cursor_ttl_seconds=60)

    first: dict[str, Any] = {}
    late = threading.Thread(target=lambda: first.update(run(task, lease(), metrics)))
    late.start()
    try:
        wait_for(lambda: list_state.stalled == 1, "the first run to hang on its second page")
        assert run(task, lease(), metrics)["result"] == "busy"  # one run at a time
        wait_for(lambda: not redis.exists(redis_keys.task_lease(TASK)), "the lease to lapse")
        second = run(task, lease(), metrics)
        assert second["result"] == "ok"
        assert second["queued"] == 3  # p3, p4, p5: from the committed cursor, not the start
    finally:
        list_state.released = True
        late.join(timeout=30)
    assert first["result"] == "lease_lost"
    assert redis.get(redis_keys.task_cursor(TASK)) == b"p5"  # the late run moved nothing
    assert list_state.requests == [None, "p2", "p2", "p4"]
    for n in range(1, 6):
        # Each recorded once, by one run: the late one wrote not even a duplicate entry.
        assert stages(redis, f"{NAME}:p{n}-paid") == ["polled", "enqueued"]


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)
