"""`payhooks audit`: what each provider says was paid in a window, held against Nexudus
(workers/audit.py checks); the discrepancies a person must look at, and exit 1 when there
are any, or a provider could not be read.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from typing import Any, TextIO

import httpx
from redis.exceptions import RedisError

from payhooks.cli.cli_output import CommandError, emit, redis_unreachable, report_error, wrapped
from payhooks.cli.reconcile import nothing_to_scan, window_from
from payhooks.providers.listers import build_listers
from payhooks.settings import Settings
from payhooks.storage import redis_connect
from payhooks.storage.trail import Trail
from payhooks.storage.worker_metrics import WorkerMetrics
from workers.audit import AUDIT_CALL_SHARE, Auditor, AuditReport
from workers.context import nexudus_client, nexudus_http
from workers.ratelimit import RateLimiter


def run_audit(
    settings: Settings,
    args: argparse.Namespace,
    out: TextIO | None = None,
    *,
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    try:
        window = window_from(args)
    except ValueError as exc:
        return report_error(CommandError(str(exc), code="usage", exit_code=2), as_json=args.json)
    listers, skipped = build_listers(settings, args.providers or None)
    if not listers:
        rows = [{"provider": name, "result": f"skipped: {why}"} for name, why in skipped.items()]
        error = nothing_to_scan(rows, "audit", named=bool(args.providers))
        return report_error(error, as_json=args.json)
    redis_url = settings.require_redis()
    redis = redis_connect.sync_client(settings)
    calls = 0

    def count(request: httpx.Request) -> None:
        nonlocal calls
        calls += 1

    http = nexudus_http(settings, event_hooks={"request": [count]})
    try:
        # The workers' own windows, and one holding the audit to its share of them. Its
        # waits are its own: not counted as the workers' throttling (that alert's metric).
        limiter = RateLimiter.for_nexudus(
            redis, settings, sleep=sleep, share=("audit", AUDIT_CALL_SHARE)
        )
        nexudus = nexudus_client(settings, redis, http, limiter, WorkerMetrics(redis))
        trail = Trail(redis, ttl_seconds=settings.event_ttl_seconds)
        report = Auditor(nexudus, redis, trail, sleep=sleep).audit(listers.values(), window)
    except RedisError as exc:
        return report_error(redis_unreachable(redis_url, exc), as_json=args.json)
    finally:
        http.close()
        redis.close()
    report.nexudus_calls = calls
    if args.json:
        emit(_as_json(report, skipped))
    else:
        _render(report, skipped, out or sys.stdout)
    return 0 if report.clean else 1


def plural(count: int, one: str, many: str) -> str:
    return one if count == 1 else many


def _as_json(report: AuditReport, skipped: dict[str, str]) -> dict[str, Any]:
    return {
        "since": report.window.since.isoformat(),
        "until": report.window.until.isoformat(),
        "clean": report.clean,
        "nexudus_calls": report.nexudus_calls,
        "counts": report.counts(),
        "providers": [
            {
                "provider": p.name,
                "listed": p.listed,
                "payments": p.payments,
                "unreadable": p.unreadable,
                "result": p.result,
            }
            for p in report.providers
        ],
        "skipped": skipped,
        "discrepancies": [finding.as_dict() for finding in report.discrepancies],
    }


def _render(report: AuditReport, skipped: dict[str, str], out: TextIO) -> None:
    counts = {status: n for status, n in report.counts().items() if n}
    checked = sum(counts.values())
    summary = ", ".join(f"{n} {status.replace('_', ' ')}" for status, n in counts.items())
    span = f"{report.window.since.isoformat()} to {report.window.until.isoformat()}"
    found = report.discrepancies
    verdict = f"{len(found)} {plural(len(found), 'discrepancy', 'discrepancies')}"
    verdict = verdict if found else "no discrepancies"
    print(
        wrapped(
            f"Audit {span}: {checked} {plural(checked, 'payment', 'payments')} "
            f"({summary or 'none'}), {verdict}; "
            f"{report.nexudus_calls} Nexudus calls"
        ),
        file=out,
    )
    for provider in report.providers:
        if provider.result != "ok":
            print(wrapped(f"{provider.name}: {provider.result}"), file=out)
    if skipped:
        names = ", ".join(skipped)
        print(wrapped(f"Not audited (no list to read; --json says why): {names}"), file=out)
    if not found:
        return
    # Each discrepancy on a line of its own, then why and what to do, wrapped: never cut.
    for finding in found:
        print(file=out)
        print(
            wrapped(
                f"{finding.status.value.replace('_', ' ').upper()}  {finding.event}  "
                f"invoice {finding.invoice}  {finding.amount}"
            ),
            file=out,
        )
        print(wrapped(finding.why, lead="  why: "), file=out)
        if finding.action:
            print(wrapped(finding.action, lead="  do:  "), file=out)
