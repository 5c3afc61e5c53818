"""How the ops model looks in a terminal: failed jobs, a job's history, events' trails.

Text fits NARROW_COLUMNS (100) unless told --wide: reasons end with what to do, so they
are wrapped, never cut. --json gives every field whole.
"""

from __future__ import annotations

import io
import json
import textwrap
from collections.abc import Mapping
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any, TextIO

from payhooks.cli.cli_output import labelled
from payhooks.cli.ops import FailedJob, JobHistory
from payhooks.cli.tables import NARROW_COLUMNS, left_for, shorten_middle, table, wrap

#: Event references longer than this are shortened in the middle (--wide shows them whole).
EVENT_WIDTH = 40
#: Narrower than this, reasons go under their row rather than in a column.
MIN_REASON_COLUMN = 30

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
            row["reason"] = "\n".join(wrap(row["reason"], width))
        table(rows, NARROW, out)
        return
    lines = io.StringIO()
    table(rows, NARROW[:-1], lines)
    header, *row_lines = lines.getvalue().splitlines()
    print(header, file=out)
    for row, line in zip(rows, row_lines, strict=True):
        print(line, file=out)
        for part in wrap(row["reason"], NARROW_COLUMNS - 2):
            print(f"  {part}", file=out)


def print_history(history: JobHistory, out: TextIO) -> None:
    """`failed show`: the job's fields, then its event's trail."""
    runs = f"{history.runs} ({history.failures} failed, {history.replays} replayed)"
    fields = [
        ("job", history.job_id),
        ("event", history.event_key),
        ("invoice", history.invoice or "-"),
        ("status", history.status),
        ("runs", runs),
    ]
    failure = history.current_failure
    if failure is not None:
        fields += [
            ("error", failure.error_class),
            ("reason", failure.reason),
            ("failed at", failure.failed_at),
            ("attempt", str(failure.attempts)),
        ]
    else:
        last = next((e for e in reversed(history.trail) if e.get("stage") != "replayed"), None)
        if last is not None:
            # An unreadable entry has no time (payhooks/storage/trail.py, UNREADABLE).
            when = f" at {last['at']}" if last["at"] else ""
            fields.append(("last", f"{last['stage']}{when}"))
    for name, value in fields:
        print(labelled(name, value, width=10), file=out)
    print(file=out)
    if history.event_key:
        print_trail({history.event_key: history.trail}, out, as_json=False)


def print_trail(
    histories: Mapping[str, list[dict[str, Any]]], out: TextIO, *, as_json: bool
) -> None:
    """Each event's trail, oldest first, its details wrapped within NARROW_COLUMNS."""
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
