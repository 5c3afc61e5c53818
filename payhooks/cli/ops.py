"""Ops commands: failed jobs (list, show, replay, purge), the event trail, event replay.

Failed jobs are RQ's own (its failed-job registry), so `rq info` and rq-dashboard see
the same ones. Every replay goes through the same idempotent job: replaying an event
that was applied changes nothing in Nexudus.
"""

from __future__ import annotations

import io
import json
import re
import sys
import textwrap
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TextIO

from redis import Redis
from rq import Queue
from rq.exceptions import InvalidJobOperation, NoSuchJobError
from rq.job import Job, JobStatus
from rq.registry import FailedJobRegistry

from payhooks.cli.cli_output import COLUMNS
from payhooks.domain.events import Ignored, Normalised, PaymentEvent
from payhooks.domain.providers import PROVIDER_NAMES
from payhooks.providers.kit.polling import PollIntake
from payhooks.providers.pollers import POLLERS, build_pollers
from payhooks.settings import Settings
from payhooks.storage import redis_keys
from payhooks.storage.jobs import JobFactory, event_fields, event_key_of, short_description
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
    def __init__(self, settings: Settings, redis: Redis, out: TextIO = sys.stdout) -> None:
        self.settings = settings
        self.redis = redis
        self.queue = Queue(settings.queue_name, connection=redis)
        self.registry = FailedJobRegistry(queue=self.queue)
        self.trail = Trail(redis, ttl_seconds=settings.event_ttl_seconds)
        self.out = out

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
        """The job's status now and its story: runs, failures and replays from the trail."""
        job = Job.fetch(job_id, connection=self.redis)
        status = job.get_status()
        event_key = event_key_of(job) or ""
        trail = self.trail.history(event_key) if event_key else []
        stages = [str(item.get("stage")) for item in trail]
        described = describe(job)
        invoice = described.invoice or next(
            (str(i["invoice_id"]) for i in reversed(trail) if i.get("invoice_id") is not None),
            "",
        )
        return JobHistory(
            job_id=job.id,
            event_key=event_key,
            status=status.value if status else "unknown",
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

    def replay_event(self, event_key: str, pollers: Mapping[str, PollIntake] = POLLERS) -> str:
        """Re-normalise the stored webhook (or polled record) with the current code and
        queue its job."""
        history = self.trail.history(event_key)
        webhook_key = next((e.get("webhook") for e in history if e.get("webhook")), None)
        polled_key = next((e.get("origin") for e in history if e.get("origin")), None)
        origin = "stored webhook" if webhook_key or not polled_key else "polled record"
        stored_key = webhook_key or polled_key
        stored = self.trail.webhook(str(stored_key)) if stored_key else None
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
        if provider_name not in built:
            raise ValueError(
                f"{event_key}: the poll of {provider_name} is not turned on here; run "
                "replay-event with the scheduler's environment"
            )
        return built[provider_name].normalise(stored["body"])

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
                self.redis.hset(Job.key_for(job_id), mapping=event_fields(event))  # type: ignore[arg-type]
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


# -- output ------------------------------------------------------------------------

#: What `failed list` fits in unless told --wide.
NARROW_COLUMNS = COLUMNS
#: Event references longer than this are shortened in the middle (--wide shows them whole).
EVENT_WIDTH = 40
MIN_REASON_WIDTH = 12
#: Narrower than this, reasons go under their row rather than in a column.
MIN_REASON_COLUMN = 30


def shorten(text: str, width: int) -> str:
    """``text`` in at most ``width`` characters, cut at a word boundary with an ellipsis."""
    text = " ".join(text.split())
    if len(text) <= width:
        return text
    cut = text[: width - 1]
    space = cut.rfind(" ")
    if space >= width // 2:  # a word boundary not too far back; else one long word is cut
        cut = cut[:space]
    return cut.rstrip(" ,;:") + "…"


def shorten_middle(text: str, width: int) -> str:
    """Keep both ends of an id (its provider, and the distinctive tail)."""
    if len(text) <= width:
        return text
    head = (width - 1) // 2
    return text[:head] + "…" + text[len(text) - (width - 1 - head) :]


def table(
    rows: Sequence[dict[str, Any]],
    columns: Sequence[str],
    out: TextIO,
    widths: dict[str, int] | None = None,
) -> None:
    """Aligned columns for a terminal; long cells are shortened to the given width.

    A cell of several lines (wrapped text) continues below, the other columns left blank.
    """
    widths = widths or {}

    def cell(row: dict[str, Any], column: str) -> list[str]:
        value = str(row.get(column, ""))
        limit = widths.get(column)
        return value.split("\n") if limit is None else [shorten(value, limit)]

    cells = [[cell(row, c) for c in columns] for row in rows]
    sizes = [
        max([len(c)] + [len(line) for r in cells for line in r[i]]) for i, c in enumerate(columns)
    ]
    print("  ".join(c.upper().ljust(sizes[i]) for i, c in enumerate(columns)).rstrip(), file=out)
    for r in cells:
        for n in range(max(len(lines) for lines in r)):
            line = [
                (lines[n] if n < len(lines) else "").ljust(sizes[i]) for i, lines in enumerate(r)
            ]
            print("  ".join(line).rstrip(), file=out)


WIDE_COLUMNS = (
    "job_id",
    "provider",
    "event_id",
    "invoice",
    "error_class",
    "reason",
    "failed_at",
    "attempts",
)
NARROW = ("event", "invoice", "error_class", "age", "reason")


def age(failed_at: str, now: datetime | None = None) -> str:
    """How long ago, in the largest whole unit: 40s, 12m, 3h, 2d."""
    if not failed_at:
        return ""
    seconds = int(
        ((now or datetime.now(tz=UTC)) - datetime.fromisoformat(failed_at)).total_seconds()
    )
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{max(seconds, 0)}s"


def as_row(job: FailedJob) -> dict[str, Any]:
    """A failed job for --json: its fields and its event key (what trace takes)."""
    return dict(asdict(job), event_key=job.event_key)


def print_failed(jobs: list[FailedJob], out: TextIO, *, as_json: bool, wide: bool = False) -> None:
    if as_json:
        print(json.dumps([as_row(j) for j in jobs], indent=2), file=out)
        return
    rows = [
        dict(asdict(j), age=age(j.failed_at), event=shorten_middle(j.event_key, EVENT_WIDTH))
        for j in jobs
    ]
    if wide:
        table(rows, WIDE_COLUMNS, out)
        return
    # The reason ends with what to do: wrapped, never cut. In its column while that is
    # wide enough to read, else on the lines under its row.
    width = left_for(rows, NARROW, "reason")
    if width >= MIN_REASON_COLUMN:
        for row in rows:
            row["reason"] = "\n".join(_wrap(row["reason"], width))
        table(rows, NARROW, out)
        return
    lines = io.StringIO()
    table(rows, NARROW[:-1], lines)
    header, *row_lines = lines.getvalue().splitlines()
    print(header, file=out)
    for row, line in zip(rows, row_lines, strict=True):
        print(line, file=out)
        for part in _wrap(row["reason"], NARROW_COLUMNS - 2):
            print(f"  {part}", file=out)


def _wrap(text: str, width: int) -> list[str]:
    return textwrap.wrap(" ".join(text.split()), width, break_on_hyphens=False) or [""]


def left_for(rows: Sequence[dict[str, Any]], columns: Sequence[str], last: str) -> int:
    """What a line of NARROW_COLUMNS leaves the last column when every other is whole."""
    used = sum(max([len(c)] + [len(str(r[c])) for r in rows]) for c in columns if c != last) + 2 * (
        len(columns) - 1
    )
    return max(NARROW_COLUMNS - used, MIN_REASON_WIDTH)


def print_trail(ops: Ops, event_keys: list[str], out: TextIO, *, as_json: bool) -> None:
    histories = {key: ops.trail.history(key) for key in event_keys}
    if as_json:
        print(json.dumps(histories, indent=2), file=out)
        return
    for key, history in histories.items():
        print(f"{key}", file=out)
        # Details (reasons above all) are wrapped, not cut, within NARROW_COLUMNS.
        used = max([len("at")] + [len(str(i["at"])) for i in history]) + max(
            [len("stage")] + [len(str(i["stage"])) for i in history]
        )
        width = max(NARROW_COLUMNS - used - 4, 30)
        rows = []
        for item in history:
            detail = {k: v for k, v in item.items() if k not in ("at", "stage")}
            text = " ".join(f"{k}={v}" for k, v in detail.items())
            rows.append(
                {
                    "at": item["at"],
                    "stage": item["stage"],
                    "detail": "\n".join(textwrap.wrap(text, width, break_on_hyphens=False)),
                }
            )
        table(rows, ("at", "stage", "detail"), out)
        print(file=out)


def confirm(question: str, *, assume_yes: bool) -> bool:
    if assume_yes:
        return True
    if not sys.stdin.isatty():
        return False
    print(f"{question} [y/N] ", end="", file=sys.stderr, flush=True)  # not into piped output
    try:
        return sys.stdin.readline().strip().lower() in ("y", "yes")
    except (EOFError, KeyboardInterrupt):
        return False
