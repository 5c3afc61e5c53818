"""Metrics that live in Redis: the queue's state and the workers' counters.

Read on each scrape with the async client, so a scrape never blocks the event loop.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from redis.asyncio import Redis
from rq.utils import utcparse

from payhooks.storage import redis_keys, trail, unapplied, worker_metrics
from payhooks.storage.redis_keys import text


class _Fetched(Collector):
    def __init__(self, families: list[Metric]) -> None:
        self._families = families

    def collect(self) -> Iterator[Metric]:
        yield from self._families


async def render(redis: Redis, queue_name: str) -> bytes:
    async with redis.pipeline(transaction=False) as pipe:
        pipe.llen(f"rq:queue:{queue_name}")
        pipe.zcard(f"rq:failed:{queue_name}")
        pipe.zcard(f"rq:scheduled:{queue_name}")
        pipe.zcard(f"rq:wip:{queue_name}")
        pipe.lindex(f"rq:queue:{queue_name}", 0)
        pipe.hgetall(worker_metrics.JOBS)
        pipe.hgetall(worker_metrics.NEXUDUS_CALLS)
        pipe.hgetall(worker_metrics.NEXUDUS_SECONDS)
        pipe.hgetall(worker_metrics.THROTTLE)
        pipe.zcard(trail.UNPROCESSED)
        pipe.exists(redis_keys.breaker("nexudus") + ":tripped")
        pipe.hgetall(worker_metrics.TASK_RUNS)
        pipe.hgetall(worker_metrics.TASK_LAST_SUCCESS)
        pipe.hgetall(worker_metrics.POLLED_EVENTS)
        pipe.hgetall(worker_metrics.RECONCILED_EVENTS)
        pipe.hgetall(worker_metrics.RECONCILE_LAST_SUCCESS)
        pipe.zcount(redis_keys.UNAPPLIED, "-inf", unapplied.overdue_before())
        (
            depth,
            failed,
            scheduled,
            started,
            oldest,
            jobs,
            calls,
            seconds,
            throttle,
            unprocessed,
            breaker_open,
            task_runs,
            task_successes,
            polled,
            reconciled,
            reconciled_at,
            overdue,
        ) = await pipe.execute()
    oldest_age = 0.0
    if oldest is not None:
        enqueued_at = await redis.hget(f"rq:job:{text(oldest)}", "enqueued_at")
        if enqueued_at:
            oldest_age = max(time.time() - utcparse(text(enqueued_at)).timestamp(), 0.0)

    families: list[Metric] = []
    for name, doc, value in (
        ("payhooks_queue_depth", "Jobs waiting in the queue.", depth),
        ("payhooks_queue_oldest_job_age_seconds", "Age of the oldest queued job.", oldest_age),
        ("payhooks_failed_jobs", "Jobs in RQ's failed-job registry.", failed),
        ("payhooks_scheduled_jobs", "Jobs waiting for a retry.", scheduled),
        ("payhooks_started_jobs", "Jobs being worked on.", started),
        (
            "payhooks_unprocessed_webhooks",
            "Verified webhooks kept because the code could not normalise them.",
            unprocessed,
        ),
        (
            "payhooks_unapplied_payments",
            "Payments paid at a provider over 30 minutes ago and not yet applied in Nexudus.",
            overdue,
        ),
        (
            "payhooks_nexudus_breaker_open",
            "1 while most recent Nexudus calls failed and workers have stopped calling it.",
            breaker_open,
        ),
    ):
        families.append(GaugeMetricFamily(name, doc, value=float(value)))

    job_outcomes = CounterMetricFamily(
        "payhooks_jobs", "Job runs by outcome and failure class.", labels=["outcome", "error_class"]
    )
    for field, count in jobs.items():
        outcome, _, error_class = text(field).partition("|")
        job_outcomes.add_metric([outcome, error_class], float(count))
    families.append(job_outcomes)

    nexudus = CounterMetricFamily(
        "payhooks_nexudus_calls",
        "Nexudus API calls by endpoint and status.",
        labels=["endpoint", "status"],
    )
    for field, count in calls.items():
        endpoint, _, status = text(field).partition("|")
        nexudus.add_metric([endpoint, status], float(count))
    families.append(nexudus)
    latency = CounterMetricFamily(
        "payhooks_nexudus_call_seconds",
        "Time spent in Nexudus calls by endpoint.",
        labels=["endpoint"],
    )
    for field, total in seconds.items():
        latency.add_metric([text(field)], float(total))
    families.append(latency)

    throttle_fields = {text(k): float(v) for k, v in throttle.items()}
    families.append(
        CounterMetricFamily(
            "payhooks_throttle_waits",
            "Waits for Nexudus throttling or our own rate limit.",
            value=throttle_fields.get("waits", 0.0),
        )
    )
    families.append(
        CounterMetricFamily(
            "payhooks_throttle_wait_seconds",
            "Time spent waiting on throttling.",
            value=throttle_fields.get("seconds", 0.0),
        )
    )
    families += _scheduled(task_runs, task_successes, polled)
    families += _reconciled(reconciled, reconciled_at)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Fetched(families))
    return generate_latest(registry)


def _scheduled(
    runs: dict[bytes, bytes], successes: dict[bytes, bytes], polled: dict[bytes, bytes]
) -> list[Metric]:
    """Scheduled tasks' runs, and the events polls found (named for a poll, not a request)."""
    by_result = CounterMetricFamily(
        "payhooks_task_runs", "Scheduled task runs by result.", labels=["task", "result"]
    )
    for field, count in runs.items():
        task, _, result = text(field).partition("|")
        by_result.add_metric([task, result], float(count))
    last = GaugeMetricFamily(
        "payhooks_task_last_success_timestamp_seconds",
        "When each scheduled task last ran to the end (Unix time).",
        labels=["task"],
    )
    for name, at in successes.items():
        last.add_metric([text(name)], float(at))
    events = CounterMetricFamily(
        "payhooks_polled_events",
        "Events polls read from providers' APIs: queued, duplicate, ignored.",
        labels=["provider", "outcome"],
    )
    for field, count in polled.items():
        provider, _, outcome = text(field).partition("|")
        events.add_metric([provider, outcome], float(count))
    return [by_result, last, events]


def _reconciled(events: dict[bytes, bytes], successes: dict[bytes, bytes]) -> list[Metric]:
    """What reconcile scans found per provider, and when each provider's last scan ended."""
    found = CounterMetricFamily(
        "payhooks_reconcile_events",
        "Events reconcile scans read from providers' lists: seen, queued, ignored, errors, given_up.",
        labels=["provider", "result"],
    )
    for field, count in events.items():
        provider, _, result = text(field).partition("|")
        found.add_metric([provider, result], float(count))
    last = GaugeMetricFamily(
        "payhooks_reconcile_last_success_timestamp_seconds",
        "When a reconcile scan of each provider last ran to the end (Unix time).",
        labels=["provider"],
    )
    for name, at in successes.items():
        last.add_metric([text(name)], float(at))
    return [found, last]
