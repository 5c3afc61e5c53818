"""The RQ worker `payhooks worker` runs: RQ's own, quiet about failures the job classified.

RQ logs every exception a job raises at ERROR with its traceback. The job function
(workers/jobs.py) already logs each failure it recognises as one structured line at
WARNING with its reason (``billing.failed`` or ``billing.retry``), so for those RQ's line
would only repeat it, twenty lines long. Tracebacks are kept for what the job did not
expect: bugs.

It also rides through a time without Redis (a Sentinel election): see ``run_worker``.
``run`` is the process, as ``service.server.run`` is the receiver's; what ends it early
(a Redis that may evict, or one that stayed away) is raised for the command to report.
"""

from __future__ import annotations

import faulthandler
import logging
import os
import signal
from types import FrameType, TracebackType
from typing import Any, Self

from redis import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError
from rq import Queue, Worker
from rq.job import Job
from rq.timeouts import BaseTimeoutException

from payhooks import logs
from payhooks.settings import Settings, redact_url
from payhooks.storage import eviction_policy, redis_connect
from payhooks.storage.redis_outage import wait_for_redis
from workers import context
from workers.errors import JobError

log = logging.getLogger("payhooks.worker")

#: How often a worker renews the heartbeat of the job its work horse runs. RQ keeps a
#: job's heartbeat for this plus 60 s (its own margin), so a job whose worker died is
#: found abandoned at most 65 s after its last heartbeat, not RQ's default of 90 s. The
#: margin a live worker has to ride through a time without Redis (heartbeats skipped) is
#: RQ's 60 s either way: it is the interval that made the wait for a dead one longer.
HEARTBEAT_SECONDS = 5

#: What workers/jobs.py classifies (and logs) before letting it reach RQ.
CLASSIFIED: tuple[type[BaseException], ...] = (JobError, RedisError, BaseTimeoutException)


class RedisMayEvict(Exception):
    """The Redis reached may evict our keys (the message says how, and what to set): no job
    is taken from it."""


class RedisStayedAway(Exception):
    """Redis was lost, or never reached, for longer than WORKER_REDIS_PATIENCE_SECONDS."""

    def __init__(self, redis_url: str, cause: BaseException) -> None:
        super().__init__(redis_url, cause)
        self.redis_url = redis_url
        self.cause = cause


def run(settings: Settings, *, burst: bool) -> int:
    """`payhooks worker`: the process, set up once, then RQ's worker for as long as it runs."""
    settings.check_worker()
    logs.configure(settings.log_format, settings.log_level)
    # `kill -USR1 <pid>` prints what every thread of a worker that seems stuck is doing.
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    context.install(context.build_context(settings))
    return run_worker(settings, burst=burst)


def classified(exc: BaseException | None) -> bool:
    return isinstance(exc, CLASSIFIED)


class PaymentWorker(Worker):
    #: The job this worker took from its queue last (its id, and the queue's key).
    held: tuple[str, str] | None = None
    #: RQ's "result is kept for N seconds" after every job: the same for every job of a
    #: kind (jobs.RESULT_TTL_SECONDS, scheduler.RESULT_TTL_SECONDS), a line each all the same.
    log_result_lifespan = False

    def execute_job(self, job: Job, queue: Queue) -> None:
        # Held until RQ is done with it: if Redis is lost meanwhile, run_worker recovers it.
        self.held = (job.id, queue.key)
        super().execute_job(job, queue)
        self.held = None

    def set_current_job_working_time(
        self, current_job_working_time: float, pipeline: Any = None
    ) -> None:
        """Written to Redis while the horse runs: skipped without Redis, as heartbeats are."""
        try:
            super().set_current_job_working_time(current_job_working_time, pipeline)
        except (RedisConnectionError, RedisTimeoutError):
            pass

    def maintain_heartbeats(self, job: Job) -> None:
        """RQ's heartbeat while the work horse runs a job; without Redis (an election),
        skipped rather than raised: raising would leave RQ's loop with the horse still
        running the job, orphaned, and the job taken for abandoned and run again. The job's
        own Redis calls wait or retry; the heartbeat resumes once Redis is back."""
        try:
            super().maintain_heartbeats(job)
        except (RedisConnectionError, RedisTimeoutError) as exc:
            log.warning(
                "worker.heartbeat_skipped",
                extra={"job_id": job.id, "error": exc.__class__.__name__},
            )

    def handle_exception(
        self,
        job: Job,
        *exc_info: Any,
    ) -> None:
        exc_type, exc, tb = _unpack(exc_info)
        if not classified(exc):
            super().handle_exception(job, exc_type, exc, tb)
            return
        self.log.debug("Worker %s: job %s failed as classified (%s)", self.name, job.id, exc_type)
        # RQ's own handler chain still runs (none is installed by default).
        for handler in self._exc_handlers:
            if handler(job, exc_type, exc, tb) is False:
                break


def _unpack(
    exc_info: tuple[Any, ...],
) -> tuple[type[BaseException] | None, BaseException | None, TracebackType | None]:
    exc_type, exc, tb = (tuple(exc_info) + (None, None, None))[:3]
    return exc_type, exc, tb


def run_worker(settings: Settings, *, burst: bool) -> int:
    """`payhooks worker`: RQ's worker, started again on a new connection (through the
    Sentinels, to the primary they name now) whenever Redis was lost, for as long as Redis
    comes back within ``WORKER_REDIS_PATIENCE_SECONDS``; RedisStayedAway once it does not."""
    redis_url = settings.require_redis()
    while True:
        connection = redis_connect.sync_client(settings)
        lost: BaseException | None = None
        worker: PaymentWorker | None = None
        try:
            # Before any job, and again on each primary a failover brings: on a Redis that
            # may evict our keys, money goes missing silently.
            problem = eviction_policy.check(connection)
            if problem is not None:
                raise RedisMayEvict(problem)
            worker = _payment_worker(settings, connection)  # RQ asks Redis already
            done = _work(settings, worker, burst=burst)
        except RedisError as exc:
            # Lost on the way out too (RQ's teardown writes its death to Redis): a dropped
            # connection, or a transaction cut in half by the failover (ResponseError).
            done, lost = False, exc
        finally:
            connection.close()
        if done or (worker is not None and worker._stop_requested):
            return 0  # as asked (SIGTERM during the job too: RQ finished it first)
        log.warning(
            "worker.redis_lost",
            extra={
                "redis": redact_url(redis_url),
                "error": lost.__class__.__name__ if lost else "",
                "patience_seconds": settings.worker_redis_patience_seconds,
            },
        )
        stopping = _StopOnSignal()
        with stopping:
            back = wait_for_redis(
                lambda: _ping(settings),
                patience_seconds=settings.worker_redis_patience_seconds,
                stop=stopping.requested,
            )
        if stopping.requested():
            return 0
        if not back:
            raise RedisStayedAway(redis_url, lost or RedisConnectionError())
        if worker is not None:
            _release_scheduler_locks(settings, worker)
            _recover_held_job(settings, worker)


def _payment_worker(settings: Settings, connection: Redis) -> PaymentWorker:
    queue = Queue(settings.queue_name, connection=connection)
    # Maintenance is when a worker finds jobs whose worker died (their heartbeat lapsed)
    # and retries or fails them, and takes over the scheduler (which moves retries due
    # back to the queue) if its owner died. RQ's defaults (every 10 minutes, and an idle
    # worker waiting ~7 minutes for a job before it looks) are too slow for payments:
    # the worker TTL sets how long an idle worker waits.
    return PaymentWorker(
        [queue],
        connection=connection,
        maintenance_interval=settings.worker_maintenance_seconds,
        worker_ttl=settings.worker_maintenance_seconds + 15,
        job_monitoring_interval=HEARTBEAT_SECONDS,
    )


def _work(settings: Settings, worker: PaymentWorker, *, burst: bool) -> bool:
    """One RQ worker's life; True when it ended as asked (SIGTERM, or a burst drained),
    False when it left because Redis went away."""
    try:
        worker.work(burst=burst, with_scheduler=True, logging_level=settings.log_level)
    finally:
        _unsubscribe(worker)
    if worker._stop_requested:
        return True
    # RQ leaves its loop by itself on a Redis timeout or an error it did not expect (it
    # logged which): carry on if Redis is what went away, else end as before.
    try:
        worker.connection.ping()
    except RedisError:
        return False
    return True


def _release_scheduler_locks(settings: Settings, worker: PaymentWorker) -> None:
    """The scheduler (which moves retries due back to the queue) of the worker that lost
    Redis could not release its lock on the way out; released now, or the next worker's
    scheduler would wait out the lock (a minute) and every retry scheduled meanwhile with
    it. Only a lock still held under that scheduler's name is deleted."""
    scheduler = worker.scheduler
    if scheduler is None:
        return
    try:
        with redis_connect.sync_client(settings, socket_timeout=3) as connection:
            scheduler._connection = connection
            scheduler.release_locks()  # type: ignore[no-untyped-call]
    except RedisError:  # lost again: the lock lapses by itself
        pass


#: Back to the front of its queue, the job the lost worker held, when nothing runs it:
#: - still in RQ's intermediate list (where a dequeue moves it; RQ takes it out in the same
#:   transaction that marks it started), so it never started;
#: - or marked started (its ``{job id}:{execution}`` entry in the started registry) while
#:   its work horse has exited: the horse lost Redis before it could record an outcome.
#: Else RQ would find it only when its started entry expires (the job's timeout + 60 s).
_RECOVER_HELD = """
if redis.call('LREM', KEYS[2], 1, ARGV[1]) == 1 then
  redis.call('LPUSH', KEYS[1], ARGV[1])
  return 1
end
if ARGV[2] ~= '1' or redis.call('HGET', KEYS[4], 'status') ~= 'started' then return 0 end
local prefix = ARGV[1] .. ':'
local removed = 0
for _, member in ipairs(redis.call('ZRANGE', KEYS[3], 0, -1)) do
  if string.sub(member, 1, #prefix) == prefix then
    redis.call('ZREM', KEYS[3], member)
    removed = removed + 1
  end
end
if removed == 0 then return 0 end
redis.call('HSET', KEYS[4], 'status', 'queued')
redis.call('LPUSH', KEYS[1], ARGV[1])
return 2
"""


def _recover_held_job(settings: Settings, worker: PaymentWorker) -> None:
    if worker.held is None:
        return
    job_id, queue_key = worker.held
    horse = worker._horse_pid
    horse_done = not horse or not _alive(horse)
    try:
        with redis_connect.sync_client(settings, socket_timeout=3) as connection:
            queue = Queue(settings.queue_name, connection=connection)
            recovered = connection.eval(
                _RECOVER_HELD,
                4,
                queue_key,
                queue.intermediate_queue_key,
                queue.started_job_registry.key,
                Job.key_for(job_id),
                job_id,
                "1" if horse_done else "0",
            )
    except RedisError:  # lost again: RQ's maintenance recovers it later
        return
    if recovered:
        log.warning(
            "worker.job_requeued",
            extra={"job_id": job_id, "was": "taken, not started" if recovered == 1 else "cut"},
        )


def _alive(pid: int) -> bool:
    try:
        finished, _ = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return False
    return finished == 0


def _unsubscribe(worker: Worker) -> None:
    """Stop RQ's command listener (a thread on its own connection), which RQ's teardown
    skips when Redis failed it earlier; the next worker starts its own."""
    try:
        worker.unsubscribe()  # type: ignore[no-untyped-call]
    except (RedisError, OSError, TypeError):  # its connection is gone: nothing to close
        pass


def _ping(settings: Settings) -> None:
    with redis_connect.sync_client(settings, socket_timeout=3, socket_connect_timeout=3) as r:
        r.ping()


class _StopOnSignal:
    """SIGTERM or SIGINT while waiting for Redis: stop waiting and exit (RQ's own handlers,
    which expect a worker loop, are put back by the next worker)."""

    def __init__(self) -> None:
        self._requested = False
        self._previous: dict[int, Any] = {}

    def requested(self) -> bool:
        return self._requested

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self._requested = True

    def __enter__(self) -> Self:
        for signum in (signal.SIGTERM, signal.SIGINT):
            self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
