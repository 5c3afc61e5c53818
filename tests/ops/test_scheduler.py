"""`payhooks scheduler` as processes: two instances queue one run per tick, a restart
queues no second run for its tick, and a run killed mid-poll (its worker and work horse)
lets its lease lapse; the next tick's run, on another worker, resumes from the cursor.

The schedulers and workers run with the test-only poll provider
(tests/support/poll_provider.py), whose list API the test serves over loopback."""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Callable, Iterator

import pytest
from redis import Redis

from payhooks.devtools.process_tree import kill_tree
from payhooks.devtools.sandbox.nexudus import SandboxState, invoice_record
from payhooks.devtools.sandbox.server import ThreadedServer
from payhooks.settings import Settings
from payhooks.storage import redis_keys
from payhooks.storage.trail import Trail
from tests.support.poll_provider import NAME, ListState, list_app, payment
from tests.support.processes import Started, worker_env
from workers.polls import poll_task

TASK = poll_task(NAME)
ENTRY = [sys.executable, "-m", "tests.support.poll_provider"]
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture
def list_state() -> ListState:
    return ListState()


@pytest.fixture
def list_api(list_state: ListState) -> Iterator[ThreadedServer]:
    server = ThreadedServer(lambda: list_app(list_state)).start()
    yield server
    list_state.released = True
    server.stop()


def env(settings: Settings, list_api: ThreadedServer, **extra: str) -> dict[str, str]:
    return worker_env(
        settings,
        PYTHONPATH=REPO,
        TESTPOLL_API_URL=list_api.url,
        TESTPOLL_POLL_SECONDS="1",
        TASK_LEASE_SECONDS="2",
        WORKER_MAINTENANCE_SECONDS="10",
        LOG_FORMAT="text",
        **extra,
    )


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def queued_ticks(redis: Redis, settings: Settings) -> list[int]:
    """The ticks of the task's runs waiting in the queue, in queue order."""
    prefix = f"task-{TASK}-"
    ids = [i.decode() for i in redis.lrange(f"rq:queue:{settings.queue_name}", 0, -1)]
    return [int(i.removeprefix(prefix)) for i in ids if i.startswith(prefix)]


@pytest.mark.slow
def test_two_schedulers_and_a_restart_queue_one_run_per_tick(
    settings: Settings, redis: Redis, list_api: ThreadedServer, processes: Started
) -> None:
    environment = env(settings, list_api)
    first = processes.start([*ENTRY, "scheduler"], environment)
    second = processes.start([*ENTRY, "scheduler"], environment)
    wait_for(lambda: len(queued_ticks(redis, settings)) >= 4, "four ticks' runs")
    # A restart within a tick: the new instance finds the tick claimed.
    kill_tree(first.pid)
    first.wait(timeout=10)
    restarted = processes.start([*ENTRY, "scheduler"], environment)
    wait_for(lambda: b"scheduler.started" in processes.stderr(restarted), "the restart")
    seen = len(queued_ticks(redis, settings))
    wait_for(lambda: len(queued_ticks(redis, settings)) >= seen + 3, "three ticks more")
    for process in (second, restarted):
        process.send_signal(signal.SIGTERM)
    assert processes.wait(second, restarted, timeout=30) == [0, 0]

    ticks = queued_ticks(redis, settings)
    assert len(ticks) == len(set(ticks)), f"a tick queued twice: {ticks}"
    # One per tick, none skipped while an instance was up.
    assert ticks == list(range(ticks[0], ticks[0] + len(ticks)))
    assert b"task.queued" in processes.stderr(second)


@pytest.mark.slow
def test_a_run_killed_mid_poll_lapses_and_the_next_resumes_from_the_cursor(
    settings: Settings,
    redis: Redis,
    sandbox_state: SandboxState,
    list_api: ThreadedServer,
    list_state: ListState,
    processes: Started,
) -> None:
    invoices = range(42, 47)
    for invoice_id in invoices:
        sandbox_state.invoices[invoice_id] = invoice_record(invoice_id)
    list_state.payments += [payment(n, invoice) for n, invoice in enumerate(invoices, 1)]
    list_state.stall_after = "p2"  # the first run hangs on its second page
    environment = env(settings, list_api)
    scheduler = processes.start([*ENTRY, "scheduler"], environment)
    doomed = processes.start([*ENTRY, "worker"], environment)
    wait_for(lambda: list_state.stalled == 1, "the first run to hang mid-poll")
    assert redis.get(redis_keys.task_cursor(TASK)) == b"p2"  # its first page is committed
    kill_tree(doomed.pid)  # the worker and its work horse, mid-run
    doomed.wait(timeout=10)

    survivor = processes.start([*ENTRY, "worker"], environment)
    wait_for(
        lambda: all(sandbox_state.invoices[i].get("Paid") for i in invoices),
        "every polled payment applied",
    )
    scheduler.send_signal(signal.SIGTERM)
    survivor.send_signal(signal.SIGTERM)
    assert processes.wait(scheduler, survivor, timeout=60) == [0, 0]

    # The next run started from the committed cursor, not from the start.
    assert list_state.requests[:3] == [None, "p2", "p2"]
    assert None not in list_state.requests[1:]
    trail = Trail(redis, ttl_seconds=60)
    for n in range(1, 6):
        entries = [e["stage"] for e in trail.history(f"{NAME}:p{n}-paid")]
        assert entries.count("enqueued") == 1, (n, entries)
    assert b"task.done" in processes.stderr(survivor)
