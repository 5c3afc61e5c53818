"""Stripe payments for the money-path tests, and what they read back: the sample events,
a payment's job and its result, the tokens on an invoice, replays as a person makes them."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from redis import Redis
from rq import Queue
from rq.job import Job
from rq.registry import ScheduledJobRegistry

from payhooks.devtools.sandbox.nexudus import SandboxState
from payhooks.domain.money import to_minor_units
from payhooks.providers.stripe import sample as samples
from payhooks.settings import Settings
from tests.support.delivery import outcome_of, queued_job
from tests.support.processes import PAYHOOKS, worker_env


def succeeded(intent: dict[str, Any]) -> dict[str, Any]:
    return samples.event("payment_intent.succeeded", intent)


def intent(invoice_id: int, amount: str, **kw: Any) -> dict[str, Any]:
    return samples.payment_intent(invoice_id=invoice_id, amount=Decimal(amount), **kw)


def job_of(redis: Redis, event: dict[str, Any]) -> Job:
    return queued_job(redis, f"stripe:{event['id']}")


def tokens_of(state: SandboxState, invoice_id: int) -> list[dict[str, Any]]:
    return [t for t in state.tokens.values() if t["CoworkerInvoiceId"] == invoice_id]


def wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def run_worker_process(settings: Settings, **env: str) -> subprocess.Popen[bytes]:
    """A `payhooks worker --burst` process, quick to retry in place, quiet but for warnings."""
    return subprocess.Popen(
        [*PAYHOOKS, "worker", "--burst"],
        env=worker_env(settings, JOB_RETRY_IN_PLACE_FIRST_MS="5", LOG_LEVEL="WARNING", **env),
        stderr=subprocess.PIPE,
    )


def requeue_scheduled(redis: Redis, queue: Queue) -> None:
    """The scheduler's part, without waiting for it: scheduled retries queued now."""
    scheduled = ScheduledJobRegistry(queue=queue)
    for job_id in scheduled.get_job_ids():
        scheduled.remove(job_id)
        queue.enqueue_job(Job.fetch(job_id, connection=redis))


def replay(redis: Redis, queue: Queue, job: Job) -> None:
    """What `payhooks failed replay` does to a failed job: queue it again."""
    queue.enqueue_job(Job.fetch(job.id, connection=redis))


def result_of(redis: Redis, event: dict[str, Any]) -> str:
    """How the last run of a Stripe event's job ended (its trail says: the finished job is
    not kept)."""
    return outcome_of(redis, f"stripe:{event['id']}")


def refunded(payment: dict[str, Any], amount: str | None = None) -> dict[str, Any]:
    """``charge.refunded`` for the payment's charge: ``amount`` back (all of it by default)."""
    back = payment["amount"] if amount is None else to_minor_units(Decimal(amount), "EUR")
    charge = dict(samples.charge(payment), amount_refunded=back, refunded=back == payment["amount"])
    return samples.event("charge.refunded", charge)


def refund_created(payment: dict[str, Any], amount: str) -> dict[str, Any]:
    refund = {
        "id": "re_" + payment["id"][3:],
        "object": "refund",
        "amount": to_minor_units(Decimal(amount), "EUR"),
        "currency": payment["currency"],
        "charge": payment["latest_charge"],
        "payment_intent": payment["id"],
        "status": "succeeded",
    }
    return samples.event("refund.created", refund)


def dispute(payment: dict[str, Any], event_type: str, status: str, amount: str) -> dict[str, Any]:
    return samples.event(
        event_type,
        {
            "id": "dp_" + payment["id"][3:],
            "object": "dispute",
            "amount": to_minor_units(Decimal(amount), "EUR"),
            "currency": payment["currency"],
            "charge": payment["latest_charge"],
            "payment_intent": payment["id"],
            "status": status,
        },
    )
