"""`payhooks reconcile`: ask each configured provider's API what happened in a window and
hand what we never saw to the same hand-off as webhooks (workers/reconcile.py does the
scan); a table per provider, and exit 1 when a provider could not be scanned.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TextIO

from redis import Redis
from redis.exceptions import RedisError

from payhooks.cli.cli_output import CommandError, emit, redis_unreachable, report_error
from payhooks.cli.ops import parse_since
from payhooks.cli.tables import left_for, table, wrap
from payhooks.providers.kit.listing import Lister, Window
from payhooks.providers.kit.step_errors import ProviderLookupError, ProviderLookupUnavailable
from payhooks.providers.listers import build_listers
from payhooks.settings import Settings
from payhooks.storage import redis_connect
from payhooks.storage.jobs import JobFactory
from payhooks.storage.record_once import RecordOnce
from payhooks.storage.worker_metrics import WorkerMetrics
from workers.reconcile import ScanCounts, WindowCursor, scan

#: A scan that read its whole window, but met events whose trail holds an entry that
#: cannot be read: each was handed to record-once (nothing lost), and a person looks.
UNREADABLE_TRAILS = (
    "event(s) with an unreadable trail entry, each handed to record-once: "
    "`payhooks trace` them (the log names them)"
)
COLUMNS = (
    "provider",
    "scanned",
    "seen",
    "queued",
    "ignored",
    "errors",
    # Records listed pending earlier, read back by id; and those given up still pending
    # (older than RECONCILE_PENDING_DAYS, or over the watch's cap): each needs a person.
    "read_back",
    "given_up",
    "result",
)
#: The counts, between the provider and the result.
COUNTS = COLUMNS[1:-1]


def run_reconcile(settings: Settings, args: argparse.Namespace, out: TextIO = sys.stdout) -> int:
    try:
        window = window_from(args)
    except ValueError as exc:
        return report_error(CommandError(str(exc), code="usage", exit_code=2), as_json=args.json)
    redis_url = settings.require_redis()
    redis = redis_connect.sync_client(settings)
    try:
        rows = reconcile_providers(
            settings, redis, window, args.providers or None, dry_run=args.dry_run
        )
    except RedisError as exc:
        return report_error(redis_unreachable(redis_url, exc), as_json=args.json)
    finally:
        redis.close()
    if all(str(row["result"]).startswith("skipped") for row in rows):
        return report_error(
            nothing_to_scan(rows, "reconcile", named=bool(args.providers)), as_json=args.json
        )
    # A provider named on the command line and skipped was asked for and not scanned: a
    # failure. Left to the default (every enabled provider), one with no list to read is
    # told in its row, not failed: it never will have one, and a cron'd run must pass.
    failed = [
        row
        for row in rows
        if row["result"] != "ok"
        and (args.providers or not str(row["result"]).startswith("skipped"))
    ]
    if args.json:
        emit(
            {
                "since": window.since.isoformat(),
                "until": window.until.isoformat(),
                "dry_run": args.dry_run,
                "providers": rows,
            }
        )
    else:
        print(
            f"{'Would reconcile' if args.dry_run else 'Reconciled'} "
            f"{window.since.isoformat()} to {window.until.isoformat()}",
            file=out,
        )
        # Fits 100 columns: the result (a skipped provider's reason) wraps, never cut.
        width = left_for(rows, COLUMNS, "result")
        shown = [{**row, "result": "\n".join(wrap(str(row["result"]), width))} for row in rows]
        table(shown, COLUMNS, out)
        resume = [row for row in failed if not str(row["result"]).endswith(UNREADABLE_TRAILS)]
        if resume and not args.dry_run:
            names = " ".join(str(row["provider"]) for row in resume)
            print(
                f"\nRun again to resume where each stopped: payhooks reconcile {names} "
                f"--since {window.since.isoformat()} --until {window.until.isoformat()}",
                file=out,
            )
    return 1 if failed else 0


def window_from(args: argparse.Namespace) -> Window:
    """``--since`` and ``--until`` (default now) as a window; ValueError says what is wrong."""
    now = datetime.now(tz=UTC)
    since = parse_since(args.since, now=now)
    until = now if args.until is None else parse_since(args.until, now=now)
    if since >= until:
        raise ValueError("--since must be before --until")
    # Whole seconds: the providers filter by them, and a resumed run names the same window.
    return Window(since.replace(microsecond=0), until.replace(microsecond=0))


def reconcile_providers(
    settings: Settings,
    redis: Redis,
    window: Window,
    names: list[str] | None,
    *,
    dry_run: bool = False,
    sleep: Callable[[float], None] = time.sleep,
) -> list[dict[str, Any]]:
    """Scan each provider's window; a row per provider, skipped ones with their reason."""
    listers, skipped = build_listers(settings, names)
    record = RecordOnce(JobFactory(settings), event_ttl_seconds=settings.event_ttl_seconds)
    metrics = WorkerMetrics(redis)
    rows = []
    for lister in listers.values():
        rows.append(
            _scan_one(
                lister,
                window,
                redis,
                record,
                metrics,
                dry_run=dry_run,
                sleep=sleep,
                pending_days=settings.reconcile_pending_days,
            )
        )
    for name, reason in skipped.items():
        rows.append(
            {"provider": name, **dict.fromkeys(COUNTS, "-"), "result": f"skipped: {reason}"}
        )
    return rows


def _scan_one(
    lister: Lister,
    window: Window,
    redis: Redis,
    record: RecordOnce,
    metrics: WorkerMetrics,
    *,
    dry_run: bool,
    sleep: Callable[[float], None],
    pending_days: int,
) -> dict[str, Any]:
    done = ScanCounts()
    place = WindowCursor(redis, lister.name, window, ttl_seconds=record_ttl(window))
    progress = _progress(lister.name) if sys.stderr.isatty() else None
    result = "ok"
    try:
        scan(
            lister,
            window,
            place,
            redis,
            record,
            thorough=True,
            sleep=sleep,
            progress=progress,
            counts=done,
            dry_run=dry_run,
            pending_days=pending_days,
        )
    except ProviderLookupUnavailable as exc:
        result = f"unavailable: {exc}"
    except ProviderLookupError as exc:
        result = f"refused: {exc}"
    finally:
        if progress is not None:
            print(file=sys.stderr)
        if not dry_run:
            metrics.reconciled(done.results(), lister.name)
    if result == "ok" and done.errors:
        result = f"{done.errors} record(s) unreadable: " + (
            "see the log (a dry run keeps nothing)"
            if dry_run
            else "kept, see `payhooks unprocessed list`"
        )
    elif result == "ok" and done.unreadable_trails:
        # Nothing lost (each went to record-once), but a record of ours is damaged.
        result = f"{done.unreadable_trails} {UNREADABLE_TRAILS}"
    elif result == "ok" and not dry_run:
        metrics.reconcile_success(lister.name, time.time())
    return {
        "provider": lister.name,
        **{column: getattr(done, column) for column in COUNTS},
        "result": result,
    }


def nothing_to_scan(rows: list[dict[str, Any]], verb: str, *, named: bool) -> CommandError:
    """No provider named or configured has a list to read: a run that read nothing must
    not look like one that found everything in order."""
    if not rows:
        why = "no provider is configured"
    else:
        skipped = "; ".join(
            f"{row['provider']}: {str(row['result']).removeprefix('skipped: ')}" for row in rows
        )
        why = f"none of the providers {'named' if named else 'configured'} has a list to read ({skipped})"
    return CommandError(
        f"nothing to {verb}: {why}; a provider is read once its API credentials are set "
        "(README, Reconciliation)",
        code="nothing_to_scan",
    )


def record_ttl(window: Window) -> int:
    """How long a window's cursor is kept: a day past the window's own length."""
    return int((window.until - window.since).total_seconds()) + 86400


def _progress(name: str) -> Callable[[ScanCounts], None]:
    def show(done: ScanCounts) -> None:
        print(
            f"\r{name}: {done.pages} pages, {done.scanned} records, {done.queued} queued",
            end="",
            file=sys.stderr,
            flush=True,
        )

    return show
