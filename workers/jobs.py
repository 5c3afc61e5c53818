"""The RQ job. Its only argument is the event key; the event itself is read from Redis.

Retries: RQ retries a failed job while ``retries_left`` is above zero. The job decides,
as it fails, whether that is wanted: a transient error sets the next delay (exponential
backoff with jitter, at least Nexudus's ``Retry-After``); a permanent one sets
``retries_left`` to zero, so the job lands in the failed registry at once with a reason.
"""

from __future__ import annotations

import logging
import math
import random
from typing import Any

from redis.exceptions import RedisError
from rq import get_current_job
from rq.timeouts import BaseTimeoutException

from payhooks import keys
from payhooks.events import PaymentEvent
from workers import context
from workers.apply import apply_event
from workers.errors import EventMissing, JobError, PermanentError, TransientError

log = logging.getLogger("payhooks.job")

MAX_BACKOFF_SECONDS = 3600


def apply_payment_event(event_key: str) -> dict[str, Any]:
    ctx = context.current()
    fields: dict[str, Any] = {"event_key": event_key}
    try:
        raw = ctx.redis.get(keys.event(event_key))
        if raw is None:
            raise EventMissing(
                f"event {event_key} is no longer stored (kept EVENT_RETENTION_DAYS days); "
                "ask the provider to resend it"
            )
        event = PaymentEvent.from_json(raw)
        fields.update(kind=event.kind.value, invoice=event.invoice.describe())
        enrich = ctx.enrichers.get(event.provider)
        if enrich is not None:
            event = enrich(event)
            fields.update(invoice=event.invoice.describe())
        if event.invoice.invoice_id is not None:
            fields["invoice_id"] = event.invoice.invoice_id
        outcome = apply_event(event, ctx.nexudus, ctx.ledger)
    except RedisError as exc:
        _fail(TransientError(f"Redis unavailable: {exc.__class__.__name__}"), fields, ctx)
        raise
    except BaseTimeoutException:
        # RQ's job timeout: slow, not wrong. Another attempt may well finish in time.
        _fail(TransientError("the job ran out of time (JOB_TIMEOUT_SECONDS)"), fields, ctx)
        raise
    except JobError as exc:
        _fail(exc, fields, ctx)
        raise
    except Exception as exc:
        # A bug, not a condition we know: retrying will not fix it; a replay after the fix will.
        _fail(PermanentError(f"unexpected {exc.__class__.__name__}: {exc}"), fields, ctx)
        raise
    log.info(f"billing.{outcome.result}", extra={**fields, **outcome.as_dict()})
    ctx.metrics.job(outcome.result)
    details = {k: v for k, v in outcome.as_dict().items() if k not in ("result", "invoice_id")}
    _note(ctx, event_key, outcome.result, invoice_id=outcome.invoice_id, **details)
    return outcome.as_dict()


def _note(ctx: context.WorkerContext, event_key: str, stage: str, **fields: Any) -> None:
    """Add to the event's trail; the trail must never be why a job fails."""
    try:
        ctx.trail.append(event_key, stage, **fields)
    except RedisError:
        log.warning("trail.unavailable", extra={"event_key": event_key, "stage": stage})


def backoff_seconds(
    attempt: int, base: int, retry_after: float | None, cap: int = MAX_BACKOFF_SECONDS
) -> int:
    """Exponential backoff with +-20% jitter, never shorter than ``retry_after``."""
    if base <= 0:
        return math.ceil(retry_after or 0)
    delay = float(min(base * 2 ** max(attempt - 1, 0), cap))
    delay *= random.uniform(0.8, 1.2)
    return math.ceil(max(delay, retry_after or 0))


def _fail(error: JobError, fields: dict[str, Any], ctx: context.WorkerContext) -> None:
    job = get_current_job()
    settings = ctx.settings
    attempt = settings.job_max_attempts - (job.retries_left or 0) if job else 1
    will_retry = bool(error.transient and job is not None and (job.retries_left or 0) > 0)
    failure = {
        "error_class": error.error_class,
        "reason": str(error),
        "transient": error.transient,
        "attempt": attempt,
        **fields,
    }
    if job is not None:
        if will_retry:
            delay = backoff_seconds(
                attempt,
                settings.job_retry_base_seconds,
                error.retry_after,
                settings.job_retry_max_seconds,
            )
            job.retry_intervals = [delay]
            failure["retry_in_seconds"] = delay
        else:
            job.retries_left = 0
        job.meta["failure"] = failure
        try:
            job.save_meta()  # type: ignore[no-untyped-call]
        except RedisError:
            pass
    log.warning("billing.retry" if will_retry else "billing.failed", extra=failure)
    ctx.metrics.job("retrying" if will_retry else "failed", error.error_class)
    trail_fields = {
        k: v for k, v in failure.items() if k not in ("event_key", "kind", "invoice", "invoice_id")
    }
    _note(
        ctx,
        str(fields["event_key"]),
        "retrying" if will_retry else "failed",
        invoice_id=fields.get("invoice_id"),
        **trail_fields,
    )
