"""The RQ job. Its only argument is the event key; the event itself is read from Redis.

Retries: a transient failure is first retried in place, a few times with short jittered
waits (a Nexudus blip heals in seconds). Then RQ retries the job while ``retries_left`` is
above zero. The job decides, as it fails, whether that is wanted: a transient error sets
the next delay (exponential backoff with jitter, at least Nexudus's ``Retry-After``); a
permanent one sets ``retries_left`` to zero, so the job lands in the failed registry at
once with a reason. While the shared breaker is open (Nexudus failing for every worker)
an attempt is not counted: an outage of any length ends with the backlog applied, not in
the failed registry.
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

from redis.exceptions import RedisError
from rq import Queue, get_current_job
from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus
from rq.timeouts import BaseTimeoutException

from payhooks.domain.events import PaymentEvent, PaymentKind
from payhooks.domain.paid_dates import paid_date
from payhooks.storage import redis_keys, unapplied
from payhooks.storage.jobs import JobFactory, event_from_fields
from workers import context
from workers.apply import apply_event
from workers.errors import (
    EventMissing,
    JobError,
    PaymentReinstated,
    PermanentError,
    TransientError,
)

log = logging.getLogger("payhooks.job")

T = TypeVar("T")
MAX_BACKOFF_SECONDS = 3600
#: The longest wait between two tries in place.
IN_PLACE_WAIT_CAP_SECONDS = 2.0
#: A wait Nexudus asks for longer than this goes back to RQ rather than holding the worker.
IN_PLACE_MAX_WAIT_SECONDS = 5.0


def apply_payment_event(event_key: str | None = None) -> dict[str, Any]:
    """Apply the job's event: held in the job's own hash, or, for a job queued by 0.1.0,
    named by ``event_key`` and stored under ``payhooks:event:<key>``."""
    ctx = context.current()
    job = get_current_job()
    fields: dict[str, Any] = {"event_key": event_key}
    try:
        event = _queued_event(ctx, job, event_key)
        event_key = event.key
        fields["event_key"] = event_key
        fields.update(kind=event.kind.value, invoice=event.invoice.describe())
        provider_step = ctx.provider_steps.get(event.provider)
        hinted = event.kind
        if provider_step is not None:
            event = provider_step(event)
            fields.update(invoice=event.invoice.describe())
        if event.invoice.invoice_id is not None:
            fields["invoice_id"] = event.invoice.invoice_id
        # Every provider's date under one rule: an unreadable or implausible one (1970 from
        # a date we could not read) never becomes PaidOn; the time we received it stands in.
        received = job.created_at if job is not None else None
        event = event.with_changes(
            occurred_at=paid_date(event.occurred_at, received, now=datetime.now(tz=UTC))
        )
        if hinted is not PaymentKind.PAID and event.kind is PaymentKind.PAID:
            _entered(ctx, event)
        # The job's own timeout (-1 or none: unlimited, so the worker's setting bounds it).
        own = job.timeout if job is not None else None
        limit = int(own) if own is not None and own > 0 else ctx.settings.job_timeout_seconds
        outcome = retry_in_place(
            lambda: apply_event(event, ctx.nexudus, ctx.ledger, ctx.markers, lock_seconds=limit),
            retries=ctx.settings.job_retries_in_place,
            first_wait=ctx.settings.job_retry_in_place_first_ms / 1000,
            budget_seconds=limit / 2,
            fields=fields,
        )
        if outcome.requeue:
            _requeue_held(ctx, event, outcome.requeue)
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
    _ended(ctx, event_key)
    # Empty values are left out: each trail entry is kept EVENT_RETENTION_DAYS.
    details = {
        k: v
        for k, v in outcome.as_dict().items()
        if k not in ("result", "invoice_id") and v not in ("", [], (), None)
    }
    _note(ctx, event_key, outcome.result, invoice_id=outcome.invoice_id, **details)
    # What RQ keeps as the job's result: a few bytes. The whole outcome is in the trail.
    return {"result": outcome.result}


def _queued_event(
    ctx: context.WorkerContext, job: Job | None, event_key: str | None
) -> PaymentEvent:
    if event_key is None:
        held = event_from_fields(ctx.redis.hgetall(job.key)) if job is not None else None
        if held is None:
            raise PermanentError("the job holds no event (it was not queued by payhooks)")
        return held
    raw = ctx.redis.get(redis_keys.event(event_key))
    if raw is None:
        raise EventMissing(
            f"event {event_key} is no longer stored (kept "
            f"{ctx.settings.event_retention_days} days); "
            "ask the provider to resend it"
        )
    return PaymentEvent.from_json(raw)


def _requeue_held(ctx: context.WorkerContext, event: PaymentEvent, keys: Sequence[str]) -> None:
    """Queue again the paid events a reversal held back, now that it no longer counts
    (a dispute won): as ``payhooks replay-event`` would, from the stored event.

    A held event whose job is running now is left to finish first: this job is retried
    (it records nothing twice). One whose stored event expired cannot run again: a person
    records that payment.
    """
    queue = Queue(ctx.settings.queue_name, connection=ctx.redis)
    factory = JobFactory(ctx.settings)
    lost: list[str] = []
    for key in keys:
        try:
            job: Job | None = Job.fetch(redis_keys.job_id(key), connection=ctx.redis)
        except NoSuchJobError:
            job = None
        status = job.get_status() if job is not None else None
        if status is JobStatus.STARTED:
            raise TransientError(f"held event {key} is being applied now; queued once it ends")
        if status not in (JobStatus.QUEUED, JobStatus.SCHEDULED, JobStatus.DEFERRED):
            if not ctx.redis.exists(redis_keys.event(key)):
                lost.append(key)
                continue
            if job is not None:
                job.delete()  # a finished or failed run; the new one takes its id
            queue.enqueue_job(factory.create(key, f"{key} (queued again: {event.key})", ctx.redis))
            _note(ctx, key, "replayed", job_id=redis_keys.job_id(key), source=event.key)
        ctx.ledger.reversals.release(event.payment_source, event.token, key)
    if lost:
        raise PaymentReinstated(event.token, lost)


def retry_in_place(
    attempt: Callable[[], T],
    *,
    retries: int,
    first_wait: float,
    budget_seconds: float,
    fields: dict[str, Any],
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Run ``attempt``; retry a transient failure a few times here before RQ does.

    Safe because every attempt starts from what Redis knows (a POST that may have landed
    is searched for first). Waits double from ``first_wait`` up to 2 s, with jitter (by
    default 0.25 + 0.5 + 1 + 2 + 2 + 2 s: six failures in a row heal within about 8 s). Not for waits Nexudus asked to be long, nor
    while the breaker is open, nor after a write whose outcome is unknown, nor past
    ``budget_seconds``.
    """
    started = time.monotonic()
    failed: TransientError | None = None
    for retry in range(retries + 1):
        try:
            return attempt()
        except TransientError as exc:
            if not exc.counts_as_attempt and failed is not None:
                # This attempt's own calls failed before the breaker opened: it counts,
                # or a job failing alone could wait uncounted for ever.
                raise failed from exc
            wait = min(first_wait * 2**retry, IN_PLACE_WAIT_CAP_SECONDS) * random.uniform(0.8, 1.2)
            wait = max(wait, exc.retry_after or 0)
            if (
                retry == retries
                or not exc.counts_as_attempt
                # A write that may still land: searching for it at once could miss it.
                or exc.write_may_have_landed
                or wait > IN_PLACE_MAX_WAIT_SECONDS
                or time.monotonic() - started + wait > budget_seconds
            ):
                raise
            failed = exc
            log.info(
                "billing.retry_in_place",
                extra={**fields, "reason": str(exc), "wait_s": round(wait, 2)},
            )
            sleep(wait)
    raise AssertionError("unreachable")


def _entered(ctx: context.WorkerContext, event: PaymentEvent) -> None:
    """Read paid by the provider's step, not at hand-off: counted unapplied from now."""
    try:
        unapplied.entered(ctx.redis, event, ttl_seconds=ctx.settings.event_ttl_seconds)
    except RedisError:
        log.warning("unapplied.unavailable", extra={"event_key": event.key})


def _ended(ctx: context.WorkerContext, event_key: str | None) -> None:
    """The event's job is over (applied, or failed for a person): no longer unapplied."""
    if event_key is None:
        return
    try:
        unapplied.ended(ctx.redis, event_key, ttl_seconds=ctx.settings.event_ttl_seconds)
    except RedisError:
        log.warning("unapplied.unavailable", extra={"event_key": event_key})


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
    named = getattr(error, "invoice_id", None)
    if fields.get("invoice_id") is None and isinstance(named, int):
        # The invoice the job found on its way (a refund's, through its payment): what
        # `failed list --invoice` and `trace <invoice>` look for.
        fields = {**fields, "invoice_id": named}
    settings = ctx.settings
    counted = not (error.transient and not error.counts_as_attempt)
    if job is not None and not counted:
        # RQ takes one from retries_left as it retries: give it back first.
        job.retries_left = (job.retries_left or 0) + 1
    # The job's own count: its maximum was set by whoever queued it, maybe not this worker.
    attempt = int((job.meta.get("failure") or {}).get("attempt", 0)) if job else 0
    attempt += 1 if counted else 0
    will_retry = bool(error.transient and job is not None and (job.retries_left or 0) > 0)
    failure = {
        "error_class": error.error_class,
        "reason": str(error),
        "transient": error.transient,
        "attempt": attempt,
        **fields,
    }
    if job is not None:
        if will_retry and not error.counts_as_attempt:
            # Nexudus is down for everyone: come back when the breaker may let calls through.
            delay = math.ceil((error.retry_after or 1) * random.uniform(1.0, 1.5))
            job.retry_intervals = [delay]
            failure["retry_in_seconds"] = delay
        elif will_retry:
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
    if not will_retry:
        _ended(ctx, fields.get("event_key"))
    trail_fields = {
        k: v for k, v in failure.items() if k not in ("event_key", "kind", "invoice", "invoice_id")
    }
    if fields.get("event_key"):
        _note(
            ctx,
            str(fields["event_key"]),
            "retrying" if will_retry else "failed",
            invoice_id=fields.get("invoice_id"),
            **trail_fields,
        )
