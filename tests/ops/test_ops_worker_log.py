"""What a `payhooks worker` process logs when jobs fail: one line for an expected failure,
a traceback only for a bug."""

from __future__ import annotations

import json
import subprocess
from decimal import Decimal

from redis import Redis
from rq import Queue

from payhooks.providers.stripe import sample as samples
from payhooks.settings import Settings
from payhooks.storage import redis_keys
from payhooks.storage.jobs import JOB_FUNCTION
from tests.support.delivery import deliver
from tests.support.processes import PAYHOOKS, worker_env


def test_classified_failures_are_one_warning_line_and_bugs_keep_their_traceback(
    settings: Settings, redis: Redis, queue: Queue
) -> None:
    missing = samples.event(
        "payment_intent.succeeded",
        samples.payment_intent(invoice_id=77, amount=Decimal("100.00")),  # InvoiceNotFound
    )
    other_currency = samples.event(
        "payment_intent.succeeded",
        samples.payment_intent(invoice_id=42, amount=Decimal("100.00"), currency="GBP"),
    )
    deliver(settings, "stripe", missing, other_currency)
    # A bug: a stored event the job cannot read (no classified error covers it).
    redis.set(redis_keys.event("stripe:evt_broken"), b'{"not": "an event"}')
    queue.enqueue(JOB_FUNCTION, "stripe:evt_broken", job_id=redis_keys.job_id("stripe:evt_broken"))

    worker = subprocess.run(  # noqa: PLW1510
        [*PAYHOOKS, "worker", "--burst"],
        env={**worker_env(settings), "LOG_FORMAT": "json"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert worker.returncode == 0, worker.stderr
    lines = worker.stderr.splitlines()
    records = [json.loads(line) for line in lines if line.startswith("{")]
    failed = [r for r in records if r["event"] == "billing.failed"]
    assert sorted(r["error_class"] for r in failed) == [
        "AmountMismatch",
        "InvoiceNotFound",
        "PermanentError",  # the bug, classified for the failed registry
    ]
    assert all(r["level"] == "warning" and r["reason"] for r in failed)

    # RQ's ERROR line with a traceback: once, for the bug only.
    errors = [r for r in records if r["level"] == "error"]
    assert len(errors) == 1, errors
    assert redis_keys.job_id("stripe:evt_broken") in errors[0]["event"]
    assert "Traceback" in errors[0]["event"] + str(errors[0].get("exc", ""))
    for event in (missing, other_currency):
        mentions = [line for line in lines if redis_keys.job_id(f"stripe:{event['id']}") in line]
        assert not any("Traceback" in line or "exception raised" in line for line in mentions)
    assert worker.stderr.count("Traceback") == 1
