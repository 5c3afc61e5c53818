"""Worker-side metrics, kept as counters in Redis and exported by the receiver.

RQ runs each job in a short-lived forked process, so counters in a worker's memory
would die with it. Workers add to Redis hashes instead; every receiver's GET /metrics
reads them (and the queue's state) and serves them with its own metrics. Any receiver
replica reports the same cluster-wide totals, so scrape one of them or aggregate with
max(), not sum().
"""

from __future__ import annotations

import logging
import re

from redis import Redis
from redis.exceptions import RedisError

from payhooks.storage.redis_keys import PREFIX

log = logging.getLogger("payhooks.metrics")

JOBS = f"{PREFIX}:metrics:jobs"  # field "<outcome>|<error class or ->"
NEXUDUS_CALLS = f"{PREFIX}:metrics:nexudus:calls"  # field "<method> <endpoint>|<status>"
NEXUDUS_SECONDS = f"{PREFIX}:metrics:nexudus:seconds"  # field "<method> <endpoint>"
THROTTLE = f"{PREFIX}:metrics:throttle"  # fields "waits", "seconds"
TASK_RUNS = f"{PREFIX}:metrics:task:runs"  # field "<task>|<result>"
TASK_LAST_SUCCESS = f"{PREFIX}:metrics:task:last_success"  # field "<task>": Unix time
POLLED_EVENTS = f"{PREFIX}:metrics:polled"  # field "<provider>|<outcome>"
RECONCILED_EVENTS = f"{PREFIX}:metrics:reconcile:events"  # field "<provider>|<result>"
RECONCILE_LAST_SUCCESS = f"{PREFIX}:metrics:reconcile:last_success"  # "<provider>": Unix time

_ID = re.compile(r"/\d+")


def endpoint(path: str) -> str:
    """``/api/billing/coworkerinvoices/42`` -> ``coworkerinvoices/{id}`` (bounded labels)."""
    return _ID.sub("/{id}", path.removeprefix("/api/billing/").removeprefix("/api/"))


class WorkerMetrics:
    """Never raises: a metric is not worth failing a payment for."""

    def __init__(self, redis: Redis) -> None:
        self._redis = redis

    def job(self, outcome: str, error_class: str | None = None) -> None:
        self._add(JOBS, f"{outcome}|{error_class or '-'}")

    def nexudus_call(self, method: str, path: str, status: int | str, seconds: float) -> None:
        name = f"{method} {endpoint(path)}"
        try:
            with self._redis.pipeline(transaction=False) as pipe:
                pipe.hincrby(NEXUDUS_CALLS, f"{name}|{status}", 1)
                pipe.hincrbyfloat(NEXUDUS_SECONDS, name, seconds)
                pipe.execute()
        except RedisError:
            log.debug("metrics.unavailable")

    def throttle_wait(self, seconds: float) -> None:
        try:
            with self._redis.pipeline(transaction=False) as pipe:
                pipe.hincrby(THROTTLE, "waits", 1)
                pipe.hincrbyfloat(THROTTLE, "seconds", seconds)
                pipe.execute()
        except RedisError:
            log.debug("metrics.unavailable")

    def task_run(self, task: str, result: str, *, at: float | None = None) -> None:
        """A scheduled run ended with ``result``; ``at``, when it succeeded."""
        try:
            with self._redis.pipeline(transaction=False) as pipe:
                pipe.hincrby(TASK_RUNS, f"{task}|{result}", 1)
                if at is not None:
                    pipe.hset(TASK_LAST_SUCCESS, task, f"{at:.3f}")
                pipe.execute()
        except RedisError:
            log.debug("metrics.unavailable")

    def polled(self, provider: str, outcome: str, count: int) -> None:
        """Events a poll found: queued, duplicate, ignored (as the receiver counts webhooks')."""
        if count:
            try:
                self._redis.hincrby(POLLED_EVENTS, f"{provider}|{outcome}", count)
            except RedisError:
                log.debug("metrics.unavailable")

    def reconciled(self, counts: dict[str, int], provider: str) -> None:
        """Events a reconcile scan found, by result: seen, queued, ignored, errors, given_up."""
        try:
            with self._redis.pipeline(transaction=False) as pipe:
                for result, count in counts.items():
                    if count:
                        pipe.hincrby(RECONCILED_EVENTS, f"{provider}|{result}", count)
                pipe.execute()
        except RedisError:
            log.debug("metrics.unavailable")

    def reconcile_success(self, provider: str, at: float) -> None:
        """A scan of the provider's window ran to its end."""
        try:
            self._redis.hset(RECONCILE_LAST_SUCCESS, provider, f"{at:.3f}")
        except RedisError:
            log.debug("metrics.unavailable")

    def _add(self, key: str, field: str) -> None:
        try:
            self._redis.hincrby(key, field, 1)
        except RedisError:
            log.debug("metrics.unavailable")
