"""Reconciliation: read each provider's own record of a window of time and hand what we
have not seen to the same record-once hand-off as its webhooks.

A scan reads the provider's list page by page (its lister, payhooks/providers/listers.py)
and turns each record into the events its webhook would have given: same event ids, so
the same dedupe keys. Events already recorded (by a webhook, a poll or an earlier scan)
are counted as seen and written nothing, not even a trail entry, so a scan run twice
changes nothing the second time; the rest go through record-once, whose script still
turns away one a webhook recorded in the meantime (a duplicate, never a second job). Only
once a page is recorded is the scan's cursor committed, so a scan that fails resumes at
its last committed page. A provider answering 429 is waited for (its Retry-After, else a
growing backoff), never hammered.

Scheduled, a scan is a task (workers/tasks.py) per provider and schedule, under the
task's lease: a quick one (every RECONCILE_EVERY_SECONDS over the last
RECONCILE_WINDOW_SECONDS, only what the provider failed to deliver where its API can say)
and a thorough one (every RECONCILE_FULL_EVERY_SECONDS over RECONCILE_FULL_WINDOW_SECONDS).

A provider that lists by creation time only never lists again a record that changes
after every window has passed it (a Spreedly purchase that succeeds days later, a
Braintree refund voided days later). For a lister that ``FollowsPending``, a scan keeps
the ids of those it lists still open (payhooks/storage/pending_watch.py) before the page's
cursor commits, and after its window reads back every one kept that it did not list
itself, recording each as any listed record (same event, same dedupe) and forgetting one
now final only once recorded; one still open after RECONCILE_PENDING_DAYS (or over the
lister's cap) is given up: forgotten, counted, logged and alerted on.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Protocol, TypeVar

from redis import Redis

from payhooks.domain.events import Ignored, PaymentEvent
from payhooks.providers.kit.listing import (
    FollowsPending,
    ListedPage,
    Lister,
    Pending,
    RateLimited,
    Window,
)
from payhooks.providers.kit.polling import PollIntake
from payhooks.providers.kit.receiver_errors import MalformedPayload
from payhooks.providers.kit.unreadable import reason_of
from payhooks.providers.listers import ON_DEMAND_ONLY, build_listers
from payhooks.providers.pollers import build_pollers
from payhooks.settings import Settings
from payhooks.storage import redis_keys
from payhooks.storage.jobs import JobFactory
from payhooks.storage.pending_watch import PendingWatch
from payhooks.storage.record_once import Accepted, Fence, RecordOnce, Seen, run_sync, seen_before
from payhooks.storage.task_lease import LeaseLost, TaskLease
from payhooks.storage.trail import StoredPoll
from payhooks.storage.unprocessed import READ_BY_LIST, queue_keep
from payhooks.storage.worker_metrics import WorkerMetrics
from workers.polls import Task, build_tasks

log = logging.getLogger("payhooks.reconcile")
T = TypeVar("T")

#: How many times one page is asked for again after a 429 before the scan gives up.
MAX_RATE_LIMIT_WAITS = 6
#: The longest single wait when the provider does not say how long (Retry-After).
MAX_BACKOFF_SECONDS = 60.0
#: Pending records read back before what they say is recorded, and those final are
#: forgotten: what a scan loses when it stops in between is at most these reads (a
#: multiple of Braintree's search page, 50 ids).
READ_BACK_BATCH = 50
#: RECONCILE_PENDING_DAYS's default, for callers without settings.
PENDING_DAYS = 30


@dataclass
class ScanCounts:
    """What one scan of one provider found, for its table row, log line and metrics."""

    scanned: int = 0  # records read from the provider's list
    seen: int = 0  # events recorded before (by webhook, poll or an earlier scan)
    queued: int = 0  # events recorded now, each with its one job
    ignored: int = 0  # records whose webhook would have been ignored too
    errors: int = 0  # records the normaliser could not read (each needs a person)
    # Events whose trail holds an entry that cannot be read, and nothing readable says
    # were queued: handed to record-once all the same (its script, then the job's invoice
    # marker, turn a true duplicate away; a skip could drop a payment), and each logged
    # (trail.unreadable) for a person, counted in seen or queued as record-once decides.
    unreadable_trails: int = 0
    pages: int = 0
    # Records listed pending before, read back by id (those the provider returned are
    # counted in scanned too), and those given up still pending (too old, or over the
    # watch's cap: logged).
    read_back: int = 0
    given_up: int = 0
    rate_limit_waits: int = 0
    # Every one the scan made: each page's seen-before check, its record-once batch (and
    # the script's load when Redis lacked it), and the cursor's reads and commits.
    redis_round_trips: int = 0

    def add_round_trips(self, n: int) -> None:
        self.redis_round_trips += n

    def results(self) -> dict[str, int]:
        """The per-event results, as the metric labels them."""
        return {
            "seen": self.seen,
            "queued": self.queued,
            "ignored": self.ignored,
            "errors": self.errors,
            # Still open when the watch gave it up: a person looks (an alert says so).
            "given_up": self.given_up,
        }

    def as_fields(self) -> dict[str, int]:
        return asdict(self)


class ScanCursor(Protocol):
    """Where a scan of one window got to, and what fences its writes."""

    @property
    def fence(self) -> Fence | None: ...

    @property
    def round_trips(self) -> int:
        """The Redis round trips its reads, commits and finish have made so far."""
        ...

    def cursor(self) -> str | None: ...

    def commit(self, cursor: str) -> None: ...

    def finish(self) -> None: ...


class WindowCursor:
    """A `payhooks reconcile` scan's place in one provider's window, unfenced: two runs of
    the same window may both write it, and either value is a page up to which one of them
    recorded everything, so a resume from it misses nothing."""

    fence = None

    def __init__(self, redis: Redis, provider: str, window: Window, *, ttl_seconds: int) -> None:
        self._redis = redis
        self.round_trips = 0
        self._ttl = ttl_seconds
        self._key = redis_keys.reconcile_cursor(
            provider, int(window.since.timestamp()), int(window.until.timestamp())
        )

    def cursor(self) -> str | None:
        self.round_trips += 1
        raw = self._redis.get(self._key)
        return None if raw is None else redis_keys.text(raw)

    def commit(self, cursor: str) -> None:
        self.round_trips += 1
        self._redis.set(self._key, cursor, ex=self._ttl)

    def finish(self) -> None:
        # A window scanned to its end is scanned afresh next time (nothing is queued twice).
        self.round_trips += 1
        self._redis.delete(self._key)


class ScheduledCursor:
    """A scheduled scan's place, kept in its task's cursor with the window it belongs to,
    and fenced by the task's lease: a run that finds an unfinished window finishes it."""

    def __init__(self, lease: TaskLease, window: Window, position: str | None = None) -> None:
        self._lease = lease
        self.window = window
        self._position = position
        # Its position is in memory; each commit is one lease script call (two more once
        # per Redis lifetime, when the script is loaded: not counted).
        self.round_trips = 0

    @property
    def fence(self) -> Fence | None:
        return self._lease.fence

    def cursor(self) -> str | None:
        return self._position

    def commit(self, cursor: str) -> None:
        self._position = cursor
        self.round_trips += 1
        self._lease.commit(
            json.dumps(
                {
                    "since": self.window.since.timestamp(),
                    "until": self.window.until.timestamp(),
                    "at": cursor,
                }
            )
        )

    def finish(self) -> None:
        self.round_trips += 1
        self._lease.commit("")

    @classmethod
    def unfinished(cls, lease: TaskLease) -> ScheduledCursor | None:
        """The scan an earlier run of the task left mid-window, if any."""
        saved = lease.cursor()
        if not saved:
            return None
        kept = json.loads(saved)
        window = Window(_utc(kept["since"]), _utc(kept["until"]))
        return cls(lease, window, kept["at"])


def scan(
    lister: Lister,
    window: Window,
    place: ScanCursor,
    redis: Redis,
    record: RecordOnce,
    *,
    thorough: bool,
    sleep: Callable[[float], None] = time.sleep,
    progress: Callable[[ScanCounts], None] | None = None,
    counts: ScanCounts | None = None,
    dry_run: bool = False,
    pending_days: int = PENDING_DAYS,
    read_back: bool = True,
    now: Callable[[], float] = time.time,
) -> ScanCounts:
    """Read ``window`` of the provider's list from ``place``'s cursor to its end, watching
    the records it lists still pending, then (``read_back``) read back those watched. A
    dry run writes nothing (no event, no cursor, no watch) and counts as queued what it
    would queue."""
    done = counts or ScanCounts()
    before = place.round_trips
    watch = _watch_for(lister, redis, record.ttl_seconds, pending_days)
    listed: dict[str, bool] = {}  # the pending records this scan listed: still open?
    try:
        cursor = None if dry_run else place.cursor()
        while True:
            page = fetch_patiently(
                lister, window, cursor, thorough=thorough, sleep=sleep, done=done
            )
            _record_page(lister, page.records, place, redis, record, done, dry_run=dry_run)
            if watch is not None:
                # Before the page's commit: a scan stopped here lists it again.
                _watch(lister, page.records, watch, now(), done, listed, dry_run=dry_run)
            if not dry_run:
                place.commit(page.cursor)
            cursor = page.cursor
            done.pages += 1
            if progress is not None:
                progress(done)
            if not page.more:
                if not dry_run:
                    place.finish()
                if watch is not None and read_back:
                    _read_back_pending(
                        lister, watch, listed, place, redis, record, done, sleep, now(), dry_run
                    )
                return done
    finally:
        done.redis_round_trips += place.round_trips - before
        if watch is not None:
            done.redis_round_trips += watch.round_trips


def _watch_for(
    lister: Lister, redis: Redis, ttl_seconds: int, pending_days: int
) -> PendingWatch | None:
    """The lister's watch, if it follows pending records. Never past EVENT_RETENTION_DAYS:
    the events a late change would act on (a refund's, that its void undoes) are gone."""
    if not isinstance(lister, FollowsPending):
        return None
    age = min(pending_days * 86400, ttl_seconds)
    return PendingWatch(redis, lister.name, max_age_seconds=age, cap=lister.most_pending)


def follow_replayed(
    lister: Lister, body: bytes, redis: Redis, *, ttl_seconds: int, pending_days: int
) -> tuple[bool, bool]:
    """A listed record a scan could not read, replayed by hand once the code reads it
    (`payhooks unprocessed replay`): watched, if still open, as the scan would have watched
    it (else a purchase that succeeds, or a refund voided, after every window has passed
    it is recorded by nothing), or given up out loud as a scan's would be. Whether it is
    still open, and whether it was given up."""
    watch = _watch_for(lister, redis, ttl_seconds, pending_days)
    if watch is None:
        return False, False
    done, listed = ScanCounts(), dict[str, bool]()
    _watch(lister, (body,), watch, time.time(), done, listed, dry_run=False)
    return any(listed.values()), done.given_up > 0


def _pending_of(lister: Lister, records: Iterable[bytes]) -> list[Pending]:
    assert isinstance(lister, FollowsPending)
    found = []
    for body in records:
        try:
            state = lister.pending(body)
        except (MalformedPayload, ValueError):  # unreadable: kept and counted as an error
            continue
        if state is not None:
            found.append(state)
    return found


def _watch(
    lister: Lister,
    records: tuple[bytes, ...],
    watch: PendingWatch,
    now: float,
    done: ScanCounts,
    listed: dict[str, bool],
    *,
    dry_run: bool,
) -> None:
    """Keep the page's records still open for later scans to read back (their events are
    recorded by now), and note what the page said of each."""
    states = _pending_of(lister, records)
    listed.update((state.record_id, state.open) for state in states)
    kept = [(s.record_id, s.created.timestamp()) for s in states if s.open]
    if dry_run or not kept:
        return
    # Listed open but past the watch's age already (a window reaching back further than
    # RECONCILE_PENDING_DAYS): no later scan would follow it, so a person is told.
    _given_up(lister, "reconcile.pending_given_up", watch.too_old(kept, now=now), watch, done)
    _given_up(lister, "reconcile.pending_dropped", watch.remember(kept, now=now), watch, done)


def _given_up(
    lister: Lister, why: str, ids: list[str], watch: PendingWatch, done: ScanCounts
) -> None:
    """Open records no longer followed: if one changes now, nothing will record it, so
    each is counted (the alert PayhooksReconcileGaveUpPending) and named for a person."""
    if not ids:
        return
    done.given_up += len(ids)
    log.warning(why, extra={"provider": lister.name, "count": len(ids), "transactions": ids})
    watch.forget(ids)


def _read_back_pending(
    lister: Lister,
    watch: PendingWatch,
    listed: dict[str, bool],
    place: ScanCursor,
    redis: Redis,
    record: RecordOnce,
    done: ScanCounts,
    sleep: Callable[[float], None],
    now: float,
    dry_run: bool,
) -> None:
    """Read back each watched record this scan did not list (those it listed final are
    just forgotten); record what they say now as any listed record, then forget those
    final (settled, voided, declined, failed) or that the provider no longer knows, and
    give up those past RECONCILE_PENDING_DAYS still open."""
    assert isinstance(lister, FollowsPending)
    due, aged = watch.due(now=now)
    if not dry_run:
        watch.forget([r for r in (*aged, *due) if listed.get(r) is False])
    # Those past their age are read back once more, oldest first: one that became final
    # since the last scan read it is recorded, not given up as still open.
    due = [record_id for record_id in (*aged, *due) if record_id not in listed]
    too_old = set(aged)
    for start in range(0, len(due), READ_BACK_BATCH):
        batch = due[start : start + READ_BACK_BATCH]
        found: dict[str, bytes] = {}
        for at in range(0, len(batch), lister.read_back_batch):
            ids = batch[at : at + lister.read_back_batch]
            found |= patiently(partial(lister.read_back, ids), sleep, done)
            done.read_back += len(ids)
        unknown = [record_id for record_id in batch if record_id not in found]
        for record_id in unknown:
            # Listed once, unknown now: nothing to read back, ever.
            log.warning(
                "reconcile.pending_unknown",
                extra={"provider": lister.name, "transaction": record_id},
            )
        done.errors += len(unknown)
        records = tuple(found[record_id] for record_id in batch if record_id in found)
        still_open = {state.record_id for state in _pending_of(lister, records) if state.open}
        # Recorded first, forgotten second: a scan stopped in between reads them again.
        _record_page(lister, records, place, redis, record, done, dry_run=dry_run)
        if not dry_run:
            watch.forget([record_id for record_id in batch if record_id not in still_open])
            # Still open after RECONCILE_PENDING_DAYS: a person must look at each one.
            aged_open = [record_id for record_id in batch if record_id in still_open & too_old]
            _given_up(lister, "reconcile.pending_given_up", aged_open, watch, done)
            # The window stays finished; a scheduled run's lease is renewed (and a run that
            # lost it stops here), as a page's commit does.
            place.finish()


def fetch_patiently(
    lister: Lister,
    window: Window,
    cursor: str | None,
    *,
    thorough: bool,
    sleep: Callable[[float], None],
    done: ScanCounts | None = None,
) -> ListedPage:
    """The page after ``cursor``; a 429 waited out (its Retry-After, else a growing
    backoff) MAX_RATE_LIMIT_WAITS times, then raised."""
    return patiently(lambda: lister.fetch(window, cursor, thorough=thorough), sleep, done)


def patiently(
    call: Callable[[], T], sleep: Callable[[float], None], done: ScanCounts | None = None
) -> T:
    """``call``'s answer; a 429 waited out as ``fetch_patiently`` says."""
    for attempt in range(MAX_RATE_LIMIT_WAITS + 1):
        try:
            return call()
        except RateLimited as exc:
            if attempt == MAX_RATE_LIMIT_WAITS:
                raise
            if done is not None:
                done.rate_limit_waits += 1
            sleep(exc.retry_after if exc.retry_after is not None else _backoff(attempt))
    raise AssertionError("unreachable")


def _backoff(attempt: int) -> float:
    return min(2.0**attempt, MAX_BACKOFF_SECONDS)


def _record_page(
    lister: Lister,
    records: tuple[bytes, ...],
    place: ScanCursor,
    redis: Redis,
    record: RecordOnce,
    done: ScanCounts,
    *,
    dry_run: bool = False,
) -> None:
    """Record the page's unseen events, keep what could not be read; count the rest."""
    found, unreadable = _events_of(lister, records, done)
    if unreadable and not dry_run:
        _keep_unreadable(lister, unreadable, redis, record.ttl_seconds)
        done.redis_round_trips += 1
    _record_events(lister, found, place, redis, record, done, dry_run=dry_run)


def _record_events(
    lister: Lister,
    found: list[tuple[bytes, list[PaymentEvent]]],
    place: ScanCursor,
    redis: Redis,
    record: RecordOnce,
    done: ScanCounts,
    *,
    dry_run: bool,
) -> None:
    if not found:
        return
    # One round trip says which were recorded before: those are written nothing at all.
    answers = iter(seen_before(redis, [event.key for _, events in found for event in events]))
    done.redis_round_trips += 1
    calls: list[list[object]] = []
    spans: list[int] = []
    for body, events in found:
        judged = [(event, next(answers)) for event in events]
        done.unreadable_trails += sum(seen is Seen.UNREADABLE for _, seen in judged)
        unseen = [event for event, seen in judged if seen is not Seen.YES]
        done.seen += len(events) - len(unseen)
        if dry_run:
            done.queued += len(unseen)
        elif unseen:
            origin = StoredPoll.of(lister.name, body, lister.redact(body))
            spans.append(len(unseen))
            calls += record.calls(origin, unseen, fence=place.fence)
    if not calls:
        return
    results = run_sync(redis, record, calls, round_trips=done.add_round_trips)
    accepted: list[Accepted] = []
    start = 0
    for n in spans:
        accepted += record.accepted(results[start:], n)
        start += n
    if Accepted.FENCED in accepted:
        raise LeaseLost("the scan's lease lapsed before a page was recorded")
    done.queued += accepted.count(Accepted.QUEUED)
    # Recorded by a webhook between the check and the script: seen, and no second job.
    done.seen += accepted.count(Accepted.DUPLICATE)


def _events_of(
    lister: Lister, records: tuple[bytes, ...], done: ScanCounts
) -> tuple[list[tuple[bytes, list[PaymentEvent]]], list[tuple[bytes, str]]]:
    """Each record's events, as its webhook would have given them, and the records that
    could not be read, with why; the rest counted."""
    found = []
    unreadable = []
    for body in records:
        done.scanned += 1
        try:
            normalised = lister.normalise(body)
        except (MalformedPayload, ValueError) as exc:
            # It may be a payment no webhook brought: kept for a person, counted (the exit
            # status, the stale alert), and the scan goes on.
            done.errors += 1
            reason = reason_of(exc)
            log.warning("reconcile.unreadable", extra={"provider": lister.name, "reason": reason})
            unreadable.append((body, reason))
            continue
        done.ignored += sum(isinstance(item, Ignored) for item in normalised)
        events = [item for item in normalised if isinstance(item, PaymentEvent)]
        if events:
            found.append((body, events))
    return found, unreadable


def _keep_unreadable(
    lister: Lister, unreadable: list[tuple[bytes, str]], redis: Redis, ttl_seconds: int
) -> None:
    """Each record kept and listed as unprocessed (`payhooks unprocessed`), where a person
    sees it and, once the code reads it, replays it: a later scan's window may no longer
    reach it."""
    now = time.time()
    with redis.pipeline(transaction=False) as pipe:
        for body, reason in unreadable:
            try:
                redacted = lister.redact(body)
            except Exception:  # noqa: BLE001 (too broken to redact: kept as listed, as a webhook is)
                redacted = None
            origin = StoredPoll.of(lister.name, body, redacted)
            queue_keep(pipe, origin, reason, ttl_seconds=ttl_seconds, now=now, read_by=READ_BY_LIST)
        pipe.execute()


def window_ending(now: float, seconds: int) -> Window:
    return Window(_utc(now - seconds), _utc(now))


def _utc(timestamp: float) -> datetime:
    return datetime.fromtimestamp(timestamp, tz=UTC)


def reconcile_task(provider: str, *, thorough: bool) -> str:
    """A scheduled scan's task name: quick or thorough, per provider."""
    return f"reconcile-{provider}" + ("-full" if thorough else "")


def build_reconcile_tasks(
    settings: Settings, redis: Redis, metrics: WorkerMetrics, listers: Mapping[str, Lister]
) -> dict[str, Task]:
    """The scheduled scans these settings turn on, by task name."""
    if not settings.reconcile_schedule:
        return {}
    record = RecordOnce(JobFactory(settings), event_ttl_seconds=settings.event_ttl_seconds)
    tasks = {}
    for lister in listers.values():
        for thorough, every, seconds in (
            (False, settings.reconcile_every_seconds, settings.reconcile_window_seconds),
            (True, settings.reconcile_full_every_seconds, settings.reconcile_full_window_seconds),
        ):

            def work(
                lease: TaskLease,
                lister: Lister = lister,
                thorough: bool = thorough,
                seconds: int = seconds,
            ) -> Mapping[str, int]:
                return scheduled_scan(
                    lister,
                    lease,
                    redis,
                    record,
                    metrics,
                    thorough=thorough,
                    seconds=seconds,
                    pending_days=settings.reconcile_pending_days,
                ).as_fields()

            name = reconcile_task(lister.name, thorough=thorough)
            tasks[name] = Task(name, every, work)
    return tasks


def scheduled_scan(
    lister: Lister,
    lease: TaskLease,
    redis: Redis,
    record: RecordOnce,
    metrics: WorkerMetrics,
    *,
    thorough: bool,
    seconds: int,
    pending_days: int = PENDING_DAYS,
    now: Callable[[], float] = time.time,
) -> ScanCounts:
    """One run of a scheduled scan: the window an earlier run left unfinished, then the
    last ``seconds`` and the pending records it watches; counted per provider
    whatever happens."""
    done = ScanCounts()
    try:
        unfinished = ScheduledCursor.unfinished(lease)
        if unfinished is not None:
            scan(
                lister,
                unfinished.window,
                unfinished,
                redis,
                record,
                thorough=thorough,
                counts=done,
                pending_days=pending_days,
                read_back=False,  # once, after the run's own window
                now=now,
            )
        window = window_ending(now(), seconds)
        scan(
            lister,
            window,
            ScheduledCursor(lease, window),
            redis,
            record,
            thorough=thorough,
            counts=done,
            pending_days=pending_days,
            now=now,
        )
    finally:
        metrics.reconciled(done.results(), lister.name)
    # A record that could not be read may be a payment no webhook brought: not a success,
    # as `payhooks reconcile` exits 1 for it, so the staleness alert tells a person.
    if not done.errors:
        metrics.reconcile_success(lister.name, now())
    return done


def scheduled_tasks(
    settings: Settings, redis: Redis, metrics: WorkerMetrics, pollers: Mapping[str, PollIntake]
) -> dict[str, Task]:
    """Every scheduled task the settings turn on: providers' polls and reconcile scans."""
    listers, _ = build_listers(settings)
    scheduled = {name: lister for name, lister in listers.items() if name not in ON_DEMAND_ONLY}
    return {
        **build_tasks(settings, redis, metrics, build_pollers(settings, pollers)),
        **build_reconcile_tasks(settings, redis, metrics, scheduled),
    }
