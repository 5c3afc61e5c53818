"""`payhooks scheduler`: queues each scheduled task's run once per tick, on the workers' queue.

A task's ticks are counted from the Unix epoch (tick n starts at n x its interval), so
every instance agrees on them; a Redis script claims a tick for the task only if no
instance claimed it or a later one, and the instance that claimed it queues the run
(``workers.tasks.run_task``, an ordinary RQ job). So two instances, or a restart within
a tick, queue one run per tick; a scheduler that was down for a tick queues the current
one as it starts. A scheduler killed between claiming a tick and queueing its run loses
that tick's run; the next tick's comes as usual.

The runs themselves hold the task's lease (payhooks/storage/task_lease.py): a run still
going when the next tick comes makes that tick's run a no-op ("busy").

Why not RQ's own CronScheduler (``rq cron``, 2.4 and later, beta): it keeps each job's
last run in the process only, so a restart runs every interval job at once, and each
instance enqueues on its own, so two instances run every job twice (measured with RQ
2.12: 6 runs in 7 s of a 2 s job with two instances; a restart re-ran it at once).
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Mapping
from types import FrameType

from redis import Redis
from redis.exceptions import RedisError
from rq import Queue

from payhooks import logs
from payhooks.providers.kit.polling import PollIntake
from payhooks.providers.pollers import POLLERS
from payhooks.settings import Settings
from payhooks.storage import redis_connect, redis_keys
from payhooks.storage.worker_metrics import WorkerMetrics
from workers.polls import TASK_FUNCTION, Task
from workers.reconcile import scheduled_tasks

log = logging.getLogger("payhooks.scheduler")

#: How long a run's result is kept in RQ (runs are also counted and logged).
RESULT_TTL_SECONDS = 3600
#: The longest the loop sleeps, so a task added by a restart of the workers is not late.
MAX_SLEEP_SECONDS = 60.0
#: How long to wait before trying Redis again.
REDIS_RETRY_SECONDS = 1.0

# KEYS: the task's last claimed tick. ARGV: this tick, the key's TTL in seconds.
_CLAIM = """
local tick_key = KEYS[1]
local tick = tonumber(ARGV[1])
local ttl = ARGV[2]
local last = tonumber(redis.call('GET', tick_key) or '-1')
if last >= tick then
    return 0
end
redis.call('SET', tick_key, tick, 'EX', ttl)
return 1
"""


class Scheduler:
    def __init__(self, redis: Redis, settings: Settings, tasks: Mapping[str, Task]) -> None:
        self._redis = redis
        self._settings = settings
        self._tasks = tasks
        self._queue = Queue(settings.queue_name, connection=redis)
        self._claim = redis.register_script(_CLAIM)

    def queue_due(self, now: float) -> float:
        """Queue the run of every task whose current tick is unclaimed; the seconds until
        the next tick of any task."""
        for task in self._tasks.values():
            tick = int(now // task.interval_seconds)
            ttl = max(task.interval_seconds * 3, 60)
            if self._claim(keys=[redis_keys.task_tick(task.name)], args=[tick, ttl]):
                self._enqueue(task, tick)
        if not self._tasks:
            return MAX_SLEEP_SECONDS
        return min(t.interval_seconds - now % t.interval_seconds for t in self._tasks.values())

    def _enqueue(self, task: Task, tick: int) -> None:
        job_id = f"task-{task.name}-{tick}"
        self._queue.enqueue(
            TASK_FUNCTION,
            task.name,
            job_id=job_id,
            description=f"scheduled {task.name} (tick {tick})",
            # A run longer than the job timeout is stopped by RQ; its lease lapses after.
            job_timeout=self._settings.job_timeout_seconds,
            result_ttl=RESULT_TTL_SECONDS,
            failure_ttl=self._settings.failed_job_ttl_seconds,
            # A run not started before its task's next tick is superseded by that one's.
            ttl=max(task.interval_seconds, 60),
        )
        log.info("task.queued", extra={"task": task.name, "tick": tick, "job_id": job_id})

    def run(self, stop: threading.Event) -> None:
        """Queue runs as they fall due until ``stop`` is set."""
        names = ", ".join(f"{t.name} every {t.interval_seconds}s" for t in self._tasks.values())
        log.info("scheduler.started", extra={"tasks": names or "none"})
        while not stop.is_set():
            try:
                wait = self.queue_due(time.time())
            except RedisError as exc:
                log.warning("scheduler.redis_unavailable", extra={"error": type(exc).__name__})
                wait = REDIS_RETRY_SECONDS
            # A hair past the boundary, so the next pass is in the new tick.
            stop.wait(min(wait + 0.01, MAX_SLEEP_SECONDS))
        log.info("scheduler.stopped")


def stop_on_signals() -> threading.Event:
    """An event set by SIGTERM or SIGINT: the scheduler finishes its pass and exits."""
    stop = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    return stop


def run_scheduler(settings: Settings, pollers: Mapping[str, PollIntake] = POLLERS) -> int:
    """The `payhooks scheduler` process: runs until SIGTERM or SIGINT."""
    settings.require_redis()
    for section in settings.providers:
        section.check()
    logs.configure(settings.log_format, settings.log_level)
    stop = stop_on_signals()
    redis = redis_connect.sync_client(settings, socket_timeout=10, socket_connect_timeout=5)
    try:
        tasks = scheduled_tasks(settings, redis, WorkerMetrics(redis), pollers)
        Scheduler(redis, settings, tasks).run(stop)
    finally:
        redis.close()
    return 0
