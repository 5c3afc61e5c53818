"""Graceful shutdown with real processes and real signals."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import threading
import time
from decimal import Decimal

import httpx
import pytest
from redis import Redis
from rq import Queue

from payhooks.devtools.embedded_redis import free_port
from payhooks.devtools.sandbox.nexudus import INVOICES, Fault, SandboxState
from payhooks.providers.stripe import sample as samples
from payhooks.settings import Settings
from payhooks.storage import redis_keys
from tests.support.delivery import deliver, finished
from tests.support.processes import PAYHOOKS, Started, worker_env
from tests.support.settings import STRIPE_SECRET


def _wait_for(predicate: object, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return True
        time.sleep(0.02)
    return False


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


@pytest.mark.slow
def test_receiver_finishes_in_flight_requests_and_their_enqueue_on_sigterm(
    settings: Settings, redis: Redis, queue: Queue
) -> None:
    port = free_port()
    server = subprocess.Popen(
        [*PAYHOOKS, "serve", "--host", "127.0.0.1", "--port", str(port)],
        env=worker_env(settings),
        stderr=subprocess.DEVNULL,
    )
    try:
        assert _wait_for(lambda: _listening(port), 20)
        event = samples.event(
            "payment_intent.succeeded",
            samples.payment_intent(invoice_id=42, amount=Decimal("100.00")),
        )
        body, headers = samples.signed(event, STRIPE_SECRET)
        answer: dict[str, int] = {}

        def post() -> None:
            response = httpx.post(
                f"http://127.0.0.1:{port}/webhooks/stripe",
                content=body,
                headers=headers,
                timeout=30,
            )
            answer["status"] = response.status_code

        redis.execute_command("CLIENT", "PAUSE", "1500", "WRITE")  # the enqueue will wait
        sender = threading.Thread(target=post)
        sender.start()
        time.sleep(0.3)  # the request is in flight, waiting on Redis
        server.send_signal(signal.SIGTERM)
        assert _wait_for(lambda: not _listening(port), 5)  # stops accepting at once
        sender.join(timeout=30)
        assert server.wait(timeout=30) == 0
    finally:
        if server.poll() is None:
            server.kill()
    assert answer == {"status": 200}
    assert queue.job_ids == [redis_keys.job_id(f"stripe:{event['id']}")]


@pytest.mark.slow
def test_worker_finishes_its_current_job_on_sigterm(
    settings: Settings, sandbox_state: SandboxState, redis: Redis, processes: Started
) -> None:
    sandbox_state.faults.append(Fault("PUT", INVOICES, 200, delay=2))  # a slow PUT
    event = samples.event(
        "payment_intent.succeeded", samples.payment_intent(invoice_id=42, amount=Decimal(100))
    )
    deliver(settings, "stripe", event)
    worker = processes.start([*PAYHOOKS, "worker"], worker_env(settings))
    assert _wait_for(lambda: bool(sandbox_state.tokens), 20)  # mid-job: token done, PUT slow
    os.kill(worker.pid, signal.SIGTERM)
    processes.wait(worker, timeout=60)
    errors = processes.stderr(worker)
    assert worker.returncode == 0, errors.decode()[-2000:]
    assert sandbox_state.invoices[42]["PaidOn"] is not None
    assert finished(redis, f"stripe:{event['id']}") == "applied"
    assert b"warm shut down" in errors.lower() or b"warm shutdown" in errors.lower()
