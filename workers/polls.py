"""The scheduled tasks, and the one kind there is now: a poll of a provider's API.

A poll reads its provider's list page by page from the task's cursor, records each page's
events once (record-once's sync runner: the same dedupe, trail and job as a webhook's,
fenced by the run's lease) and only then commits the page's cursor. A run that dies
leaves the cursor at its last committed page; the next run reads on from there, and what
it reads again is a duplicate, never a second job.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from redis import Redis

from payhooks.domain.events import Ignored, PaymentEvent
from payhooks.providers.kit.polling import Poller
from payhooks.settings import Settings
from payhooks.storage.jobs import JobFactory
from payhooks.storage.record_once import Accepted, RecordOnce, run_sync
from payhooks.storage.task_lease import LeaseLost, TaskLease
from payhooks.storage.trail import StoredPoll
from payhooks.storage.worker_metrics import WorkerMetrics

#: The RQ job of a task's run (workers/tasks.py), as the scheduler queues it: a stable name,
#: so runs queued by one version run on the next.
TASK_FUNCTION = "workers.tasks.run_task"


@dataclass
class PollCounts:
    """What one run of a poll did, for its log line and the metrics."""

    pages: int = 0
    records: int = 0
    counts: dict[str, int] = field(
        default_factory=lambda: {"queued": 0, "duplicate": 0, "ignored": 0}
    )

    def as_fields(self) -> dict[str, int]:
        return {"pages": self.pages, "records": self.records, **self.counts}


@dataclass(frozen=True, slots=True)
class Task:
    """A task the scheduler runs every ``interval_seconds``, one run at a time."""

    name: str
    interval_seconds: int
    #: One run's work, under its lease; what it did, for the run's log line.
    work: Callable[[TaskLease], Mapping[str, int]]


def poll_task(provider: str) -> str:
    """A poll's task name (Redis keys and RQ job ids take it as it is)."""
    return f"poll-{provider}"


def build_tasks(
    settings: Settings, redis: Redis, metrics: WorkerMetrics, pollers: Mapping[str, Poller]
) -> dict[str, Task]:
    """Every scheduled task these settings turn on, by name."""
    record = RecordOnce(JobFactory(settings), event_ttl_seconds=settings.event_ttl_seconds)
    tasks = {}
    for poller in pollers.values():

        def work(lease: TaskLease, poller: Poller = poller) -> Mapping[str, int]:
            return poll(poller, lease, redis, record, metrics).as_fields()

        name = poll_task(poller.name)
        tasks[name] = Task(name, poller.interval_seconds, work)
    return tasks


def poll(
    poller: Poller, lease: TaskLease, redis: Redis, record: RecordOnce, metrics: WorkerMetrics
) -> PollCounts:
    """Read the provider's list from the task's cursor to its end, page by page."""
    done = PollCounts()
    cursor = lease.cursor()
    while True:
        page = poller.fetch(cursor)
        calls: list[list[object]] = []
        # Where each record's event scripts sit among the page's calls.
        spans: list[tuple[int, int]] = []
        ignored_count = 0
        for body in page.records:
            found = poller.normalise(body)
            events = [item for item in found if isinstance(item, PaymentEvent)]
            ignored = [item for item in found if isinstance(item, Ignored)]
            origin = StoredPoll.of(poller.name, body, poller.redact(body))
            spans.append((len(calls), len(events)))
            calls += record.calls(origin, events, ignored, fence=lease.fence)
            ignored_count += len(ignored)
        results = run_sync(redis, record, calls) if calls else []
        accepted = [a for start, n in spans for a in record.accepted(results[start:], n)]
        if Accepted.FENCED in accepted:
            raise LeaseLost(f"task {lease.task}: its lease lapsed before a page was recorded")
        # Only once the page's events are recorded: the cursor never passes one that is not.
        lease.commit(page.cursor)
        cursor = page.cursor
        done.pages += 1
        done.records += len(page.records)
        for outcome, count in (
            ("queued", accepted.count(Accepted.QUEUED)),
            ("duplicate", accepted.count(Accepted.DUPLICATE)),
            ("ignored", ignored_count),
        ):
            done.counts[outcome] += count
            metrics.polled(poller.name, outcome, count)
        if not page.more:
            return done
