"""How a payment event becomes an ordinary RQ job (shared by the receiver and replays).

The job is built by RQ's own ``Job.create`` so RQ's workers, registries, CLI and
rq-dashboard understand it; only the write to Redis is ours (see service/inbox.py).
Its one argument is the event key: plain data, never a pickled object.
"""

from __future__ import annotations

from typing import Any

from redis import Redis
from rq.job import Job, JobStatus
from rq.utils import now

from payhooks import keys
from payhooks.settings import Settings

JOB_FUNCTION = "workers.jobs.apply_payment_event"
RESULT_TTL_SECONDS = 86400


class JobFactory:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        # Job.create needs a connection object but performs no I/O with it.
        self._connection = Redis()
        self.queue_name = settings.queue_name
        self.queue_key = f"rq:queue:{settings.queue_name}"

    def job_mapping(self, event_key: str, description: str) -> tuple[str, str, dict[str, Any]]:
        """(job id, job hash key, job hash fields) for a newly queued job."""
        job = Job.create(
            JOB_FUNCTION,
            args=(event_key,),
            connection=self._connection,
            id=keys.job_id(event_key),
            description=description,
            timeout=self._settings.job_timeout_seconds,
            result_ttl=RESULT_TTL_SECONDS,
            failure_ttl=self._settings.failed_job_ttl_seconds,
        )
        # Retries are decided by the job itself (workers/jobs.py): it knows which
        # errors are transient and how long Nexudus asked us to wait.
        job.retries_left = self._settings.job_max_attempts - 1
        job.origin = self.queue_name
        job.enqueued_at = now()
        job._status = JobStatus.QUEUED
        return job.id, job.key, job.to_dict()
