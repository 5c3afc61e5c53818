"""How a payment event becomes an ordinary RQ job (shared by the receiver and replays).

The job's fields come from RQ's own ``Job.create(...).to_dict()``, so RQ's workers,
registries, CLI and rq-dashboard understand it. Its one argument is the event key:
plain data, never a pickled object.

Building a Job per webhook costs about as much as everything else the receiver does,
and almost all of its fields are the same for every job. So a template job is built
once, at start-up, and only the fields that differ between jobs are computed per event.
``full_mapping`` gives the whole hash, and a test holds it equal to RQ's own.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from redis import Redis
from rq import Retry
from rq.job import Job, JobStatus
from rq.utils import now, utcformat

from payhooks.settings import Settings
from payhooks.storage import redis_keys

JOB_FUNCTION = "workers.jobs.apply_payment_event"
#: How long a finished job and its result stay: long enough for rq-dashboard and `failed
#: show` after a replay; the outcome itself is in the event's trail for the retention period.
RESULT_TTL_SECONDS = 3600
#: Fields that differ from one job to the next; every other field is the template's.
VARIABLE_FIELDS = ("data", "description", "created_at", "enqueued_at")


@dataclass(frozen=True, slots=True)
class JobFields:
    job_id: str
    job_key: str
    data: bytes
    description: str
    timestamp: str


def utc_timestamp() -> str:
    """Now, as RQ writes a job's created_at and enqueued_at."""
    return utcformat(now())


class JobFactory:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self.queue_name = settings.queue_name
        self.queue_key = f"rq:queue:{settings.queue_name}"
        template = self.create("template:0", "template")
        self._serializer = template.serializer
        self.constant_fields: dict[str, Any] = {
            name: value for name, value in template.to_dict().items() if name not in VARIABLE_FIELDS
        }

    def fields(self, event_key: str, description: str, timestamp: str | None = None) -> JobFields:
        """The fields of one event's job; ``timestamp`` (``utc_timestamp()``) may be shared
        by a batch's jobs."""
        job_id = redis_keys.job_id(event_key)
        payload: tuple[str, None, tuple[str], dict[str, Any]] = (
            JOB_FUNCTION,
            None,
            (event_key,),
            {},
        )
        return JobFields(
            job_id=job_id,
            job_key=Job.key_for(job_id),
            # Uncompressed: RQ reads data that is not zlib's as it is, and a payload this
            # small only grows when compressed (and compressing costs more than the rest).
            data=self._serializer.dumps(payload),
            description=description,
            timestamp=timestamp or utc_timestamp(),
        )

    def full_mapping(self, event_key: str, description: str) -> dict[str, Any]:
        """The whole job hash as RQ itself writes it when it enqueues the job."""
        job = self.create(event_key, description)
        job.enqueued_at = now()
        return job.to_dict()

    def create(self, event_key: str, description: str, connection: Redis | None = None) -> Job:
        """The job of an event, as RQ's ``Job.create`` makes it: the one definition, used
        for the receiver's template and by replays (``Queue.enqueue_job``)."""
        return Job.create(
            JOB_FUNCTION,
            args=(event_key,),
            # Job.create needs a connection object but performs no I/O with it.
            connection=connection if connection is not None else Redis(),
            id=redis_keys.job_id(event_key),
            description=description,
            timeout=self._settings.job_timeout_seconds,
            result_ttl=RESULT_TTL_SECONDS,
            failure_ttl=self._settings.failed_job_ttl_seconds,
            # Retries are decided by the job itself (workers/jobs.py): it knows which
            # errors are transient and how long Nexudus asked us to wait.
            retry=Retry(max=self._settings.job_max_attempts - 1)
            if self._settings.job_max_attempts > 1
            else None,
            origin=self.queue_name,
            status=JobStatus.QUEUED,
        )
