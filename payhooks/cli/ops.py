"""The ops model: failed jobs (list, show, replay, purge), the event trail, event replay.

What is true in Redis, and what an operator's request changes there. How it looks in a
terminal is in ops_render.py; the commands' arguments and their outcomes, in ops_cli.py.

Failed jobs are RQ's own (its failed-job registry), so `rq info` and rq-dashboard see
the same ones. Every replay goes through the same idempotent job: replaying an event
that was applied changes nothing in Nexudus.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from redis import Redis
from rq import Queue
from rq.exceptions import InvalidJobOperation, NoSuchJobError
from rq.job import Job, JobStatus
from rq.registry import FailedJobRegistry

from payhooks.domain.events import Ignored, Normalised, PaymentEvent
from payhooks.domain.providers import PROVIDER_NAMES
from payhooks.providers.kit.polling import PollIntake
from payhooks.providers.listers import build_listers
from payhooks.providers.pollers import POLLERS, build_pollers
from payhooks.settings import Settings
from payhooks.storage import redis_keys
from payhooks.storage.jobs import JobFactory, event_key_of, replace_event, short_description
from payhooks.storage.trail import Trail


@dataclass(frozen=True, slots=True)
class FailedJob:
    job_id: str
    provider: str
    event_id: str
    invoice: str
    error_class: str
    reason: str
    failed_at: str
    attempts: int

    @property
    def event_key(self) -> str:
        return f"{self.provider}:{self.event_id}"


#: Trail stages a worker writes once per run of a job.
RUN_STAGES = frozenset(
    {
        "retrying",
        "failed",
        "applied",
        "partially_paid",
        "token_only",
        "already_applied",
        "reversed",
        "no_write",
        "ignored",
    }
)


#: Run stages that end a job well: RQ then deletes it (jobs.RESULT_TTL_SECONDS).
FINISHED_STAGES = RUN_STAGES - {"retrying", "failed"}


def ended_as(trail: list[dict[str, Any]]) -> str:
    """The status of a job no longer kept, from its event's trail: "finished" if its last
    run ended well; else "expired" (a failed job past FAILED_JOB_RETENTION_DAYS, or a
    job that never ran)."""
    runs = [str(item.get("stage")) for item in trail if item.get("stage") in RUN_STAGES]
    return "finished" if runs and runs[-1] in FINISHED_STAGES else "expired"


@dataclass(frozen=True, slots=True)
class JobHistory:
    """A job as it stands now, and what happened to it, from the event's trail."""

    job_id: str
    event_key: str
    status: str
    invoice: str
    runs: int
    failures: int
    replays: int
    #: The failure the job is in now; None once a replay has applied it.
    current_failure: FailedJob | None
    trail: list[dict[str, Any]]


@dataclass(frozen=True, slots=True)
class Filters:
    provider: str | None = None
    invoice: str | None = None
    error_class: str | None = None
    since: datetime | None = None

    def __post_init__(self) -> None:
        if self.provider is not None and not known_provider(self.provider):
            raise ValueError(
                f"--provider: no provider {self.provider!r}; one of "
                f"{', '.join(PROVIDER_NAMES)}, generic or generic/<source>"
            )
        if self.invoice is not None and not self.invoice.isdigit():
            raise ValueError(f"--invoice takes a Nexudus invoice Id (digits), got {self.invoice!r}")

    @property
    def any(self) -> bool:
        return any((self.provider, self.invoice, self.error_class, self.since))

    def match(self, job: FailedJob) -> bool:
        if self.provider == "generic":
            if not job.provider.startswith("generic/"):
                return False
        elif self.provider and job.provider != self.provider:
            return False
        if self.invoice and job.invoice != self.invoice:
            return False
        if self.error_class and job.error_class != self.error_class:
            return False
        return not (
            self.since and job.failed_at and datetime.fromisoformat(job.failed_at) < self.since
        )


def known_error_classes() -> frozenset[str]:
    """Every expected failure the job classifies, by the name failed jobs carry."""
    from workers.errors import JobError

    found: set[str] = set()
    pending: list[type[JobError]] = [JobError]
    while pending:
        cls = pending.pop()
        found.add(cls.__name__)
        pending += cls.__subclasses__()
    return frozenset(found)


def known_provider(name: str) -> bool:
    """A provider name as the URLs and event keys spell it (generic: any source)."""
    return name in PROVIDER_NAMES or name == "generic" or bool(GENERIC_NAME.fullmatch(name))


def parse_since(value: str, *, now: datetime | None = None) -> datetime:
    """``2h``, ``3d``, ``30m`` ago, or an ISO 8601 date or time (UTC unless it says)."""
    now = now or datetime.now(tz=UTC)
    match = re.fullmatch(r"(\d+)([mhd])", value.strip())
    if match:
        amount, unit = int(match.group(1)), match.group(2)
        return now - timedelta(**{{"m": "minutes", "h": "hours", "d": "days"}[unit]: amount})
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(
            f"--since takes 30m, 2h, 3d or a date like 2026-11-20; got {value!r}"
        ) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


GENERIC_NAME = re.compile(r"generic/[a-z0-9][a-z0-9-]{0,39}")


class Ops:
    def __init__(self, settings: Settings, redis: Redis) -> None:
        self.settings = settings
        self.redis = redis
        self.queue = Queue(settings.queue_name, connection=redis)
        self.registry = FailedJobRegistry(queue=self.queue)
        self.trail = Trail(redis, ttl_seconds=settings.event_ttl_seconds)

    # -- failed jobs ----------------------------------------------------------------

    def failed_jobs(self, filters: Filters) -> tuple[list[FailedJob], list[str]]:
        """The failed jobs matching ``filters``, and the ids whose job has expired."""
        ids = self.registry.get_job_ids()
        found: list[FailedJob] = []
        expired: list[str] = []
        for start in range(0, len(ids), 500):  # registries can hold very many
            chunk = ids[start : start + 500]
            for job_id, job in zip(
                chunk, Job.fetch_many(chunk, connection=self.redis), strict=True
            ):
                if job is None:
                    expired.append(job_id)
                    continue
                failed = describe(job)
                if filters.match(failed):
                    found.append(failed)
        return found, expired

    def replay(self, job_ids: Iterable[str]) -> tuple[list[str], list[str]]:
        """Requeue failed jobs with a fresh set of attempts: (replayed, skipped with why)."""
        replayed: list[str] = []
        skipped: list[str] = []
        for job_id in job_ids:
            try:
                job = Job.fetch(job_id, connection=self.redis)
            except NoSuchJobError:
                skipped.append(f"{job_id}: the job has expired; use `payhooks replay-event`")
                self.registry.remove(job_id)
                continue
            if job.get_status() != JobStatus.FAILED:
                skipped.append(f"{job_id}: not failed (status {job.get_status()})")
                continue
            job.retries_left = self.settings.job_max_attempts - 1
            job.retry_intervals = [0]  # None would leave the last backoff in Redis
            job.meta.pop("failure", None)
            try:
                self.registry.requeue(job)
            except (InvalidJobOperation, NoSuchJobError):
                skipped.append(f"{job_id}: left the failed registry meanwhile")
                continue
            # A failed job's key expires (failure TTL) and requeue keeps that expiry: a job
            # replayed into a backlog could vanish before a worker takes it.
            self.redis.persist(job.key)
            event_key = event_key_of(job)
            if event_key is not None:
                self.trail.append(event_key, "replayed", job_id=job_id)
            replayed.append(job_id)
        return replayed, skipped

    def purge(self, job_ids: Iterable[str]) -> int:
        """Delete failed jobs; a job replayed since it was listed is left alone."""
        purged = 0
        for job_id in job_ids:
            if not self.redis.zrem(self.registry.key, job_id):
                continue  # no longer failed
            try:
                job = Job.fetch(job_id, connection=self.redis)
            except NoSuchJobError:
                purged += 1  # expired: nothing left to say which event it was
                continue
            event_key = event_key_of(job)
            job.delete()
            if event_key is not None:
                self.trail_note(event_key, "purged", job_id=job_id)
            purged += 1
        return purged

    def trail_note(self, event_key: str, stage: str, **fields: Any) -> None:
        """Note on an event's trail, if the trail is still kept."""
        if self.redis.exists(redis_keys.trail(event_key)):
            self.trail.append(event_key, stage, **fields)

    def history(self, job_id: str) -> JobHistory:
        """The job's status now and its story: runs, failures and replays from the trail.
        A finished job is not kept (RQ deletes it as it finishes: jobs.RESULT_TTL_SECONDS),
        so a job that is gone but whose event's trail is kept is told from the trail;
        NoSuchJobError when neither is."""
        try:
            job = Job.fetch(job_id, connection=self.redis)
        except NoSuchJobError:
            event_key = self.event_of_job(job_id)
            if event_key is None:
                raise
            trail = self.trail.history(event_key)
            return self._history(job_id, event_key, ended_as(trail), trail, None)
        status = job.get_status()
        event_key = event_key_of(job) or ""
        trail = self.trail.history(event_key) if event_key else []
        return self._history(
            job.id, event_key, status.value if status else "unknown", trail, describe(job)
        )

    @staticmethod
    def _history(
        job_id: str,
        event_key: str,
        status: str,
        trail: list[dict[str, Any]],
        described: FailedJob | None,
    ) -> JobHistory:
        stages = [str(item.get("stage")) for item in trail]
        invoice = (described.invoice if described else "") or next(
            (str(i["invoice_id"]) for i in reversed(trail) if i.get("invoice_id") is not None),
            "",
        )
        return JobHistory(
            job_id=job_id,
            event_key=event_key,
            status=status,
            invoice=invoice,
            runs=sum(stage in RUN_STAGES for stage in stages),
            failures=stages.count("failed"),
            replays=stages.count("replayed"),
            current_failure=described if status == JobStatus.FAILED else None,
            trail=trail,
        )

    def resolve(self, reference: str) -> str:
        """A job id from what an operator pastes: a job id, or an event as `trace` takes it."""
        if self.redis.exists(Job.key_for(reference)):
            return reference
        event_key = self.find_event(reference)
        return redis_keys.job_id(event_key) if event_key else reference

    def existed(self, job_id: str) -> bool:
        """The job is in Redis, or the failed registry or an event's trail names it."""
        if self.redis.exists(Job.key_for(job_id)) or self.redis.zscore(self.registry.key, job_id):
            return True
        return self.event_of_job(job_id) is not None

    def event_of_job(self, job_id: str) -> str | None:
        """The event whose trail is kept and whose job this is. A job id is not parsed back
        into its event key (punctuation became '-'); its readable part narrows the search
        to the trails it can come from, and the id is recomputed for each."""
        readable, _, _ = job_id.rpartition("-")
        # Job ids hold only [A-Za-z0-9_-]; each '-' was '-' or any other character.
        pattern = readable.replace("-", "*")
        prefix = redis_keys.trail("")
        tail = "" if len(readable) < redis_keys.JOB_ID_READABLE_CHARS else "*"
        for found in self.redis.scan_iter(match=prefix + pattern + tail, count=1000):
            event_key = redis_keys.text(found).removeprefix(prefix)
            if redis_keys.job_id(event_key) == job_id:
                return event_key
        return None

    # -- events -----------------------------------------------------------------------

    def find_event(self, reference: str) -> str | None:
        return self.trail.find_event(reference)

    def trails(self, event_keys: Iterable[str]) -> dict[str, list[dict[str, Any]]]:
        """Each event's trail as kept, oldest first."""
        return {key: self.trail.history(key) for key in event_keys}

    def replay_event(self, event_key: str, pollers: Mapping[str, PollIntake] = POLLERS) -> str:
        """Re-normalise the stored webhook (or polled record) with the current code and
        queue its job."""
        history = self.trail.history(event_key)
        webhook_keys = [str(e["webhook"]) for e in history if e.get("webhook")]
        polled_keys = [str(e["origin"]) for e in history if e.get("origin")]
        webhook_key = webhook_keys[0] if webhook_keys else None
        origin = "stored webhook" if webhook_keys or not polled_keys else "polled record"
        # Newest first: each delivery's record lives EVENT_RETENTION_DAYS from its own
        # arrival, and the trail as long from its last entry, so the first delivery's may
        # be gone while a redelivery's is kept.
        stored = next(
            (
                kept
                for key in reversed(webhook_keys or polled_keys)
                if (kept := self.trail.webhook(key)) is not None
            ),
            None,
        )
        if stored is None:
            return (
                f"{event_key}: the {origin} has expired "
                f"(kept {self.settings.event_retention_days} days)"
            )
        event_id = event_key.split(":", 1)[1]
        found = (
            self._renormalise_webhook(event_key, stored)
            if webhook_key
            else self._renormalise_polled(event_key, stored, pollers)
        )
        normalised = [n for n in found if n.event_id == event_id]
        if not normalised:
            return f"{event_key}: not found in its {origin}"
        item = normalised[0]
        if isinstance(item, Ignored):
            self.trail.append(event_key, "replay_ignored", reason=item.reason)
            return f"{event_key}: still ignored by the current code ({item.reason})"
        return self._enqueue(item, source=origin)

    def _renormalise_webhook(self, event_key: str, stored: dict[str, Any]) -> list[Normalised]:
        # The normalisers pull in every provider's SDK: only this command needs them.
        from payhooks.providers.receivers import build_providers

        provider_name = event_key.split(":", 1)[0]
        providers = build_providers(self.settings)
        if provider_name not in providers:
            raise ValueError(
                f"{event_key}: provider {provider_name} is not configured here; run replay-event "
                "with the receiver's environment (its secrets build the normaliser)"
            )
        return providers[provider_name].normalise(stored["body"], stored["headers"])

    def _renormalise_polled(
        self, event_key: str, stored: dict[str, Any], pollers: Mapping[str, PollIntake]
    ) -> list[Normalised]:
        provider_name = event_key.split(":", 1)[0]
        built = build_pollers(self.settings, pollers)
        if provider_name in built:
            return built[provider_name].normalise(stored["body"])
        # Not polled: a record reconciliation read from the provider's list of events.
        listers, _ = build_listers(self.settings, [provider_name])
        if provider_name in listers:
            return listers[provider_name].normalise(stored["body"])
        raise ValueError(
            f"{event_key}: neither the poll nor the reconciliation of {provider_name} is "
            "turned on here; run replay-event with the workers' environment"
        )

    def _enqueue(self, event: PaymentEvent, *, source: str = "stored webhook") -> str:
        job_id = redis_keys.job_id(event.key)
        try:
            job = Job.fetch(job_id, connection=self.redis)
            status = job.get_status()
        except NoSuchJobError:
            job, status = None, None
        if status in (JobStatus.QUEUED, JobStatus.SCHEDULED):
            if job is not None and job.args:  # queued by 0.1.0: its event is stored apart
                self.redis.set(
                    redis_keys.event(event.key),
                    event.to_json(),
                    ex=self.settings.event_ttl_seconds,
                )
            else:
                replace_event(self.redis, Job.key_for(job_id), event)
            return f"{event.key}: job {job_id} is already {status.value}; it will use the new event"
        if status is JobStatus.STARTED:
            return (
                f"{event.key}: job {job_id} is running now, with the event as it was; "
                "run replay-event again once it has finished"
            )
        if job is not None:
            job.delete()  # a finished or failed run; the new one takes its id
        JobFactory(self.settings).enqueue(
            self.queue, event, short_description(event, " (replayed)")
        )
        self.trail.append(event.key, "replayed", job_id=job_id, source=source)
        return f"{event.key}: queued as {job_id}"


def describe(job: Job) -> FailedJob:
    failure: dict[str, Any] = dict(job.meta.get("failure") or {})
    event_key = event_key_of(job) or ":"
    provider, _, event_id = event_key.partition(":")
    if not failure:
        # Not failed by our code: RQ's own verdict (a killed worker, say).
        latest = job.latest_result()
        text = (latest.exc_string or "") if latest else ""
        last = text.strip().splitlines()[-1] if text.strip() else "unknown"
        failure = {"error_class": last.split(":")[0].split(".")[-1], "reason": last}
    invoice_id = failure.get("invoice_id")
    return FailedJob(
        job_id=job.id,
        provider=provider,
        event_id=event_id,
        invoice="" if invoice_id is None else str(invoice_id),
        error_class=str(failure.get("error_class", "")),
        reason=str(failure.get("reason", "")),
        failed_at=job.ended_at.replace(tzinfo=UTC).isoformat(timespec="seconds")
        if job.ended_at
        else "",
        attempts=int(failure.get("attempt", 0) or 0),
    )
