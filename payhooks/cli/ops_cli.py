"""The ops subcommands of `payhooks`: argument handling and outcomes around payhooks.cli.ops
(the model), printed by payhooks.cli.ops_render."""

from __future__ import annotations

import argparse
import sys
from dataclasses import asdict

from redis.exceptions import RedisError
from rq.exceptions import NoSuchJobError

from payhooks.cli.cli_output import (
    CommandError,
    confirm,
    emit,
    redis_unreachable,
    report_error,
)
from payhooks.cli.ops import Filters, Ops, known_error_classes, parse_since
from payhooks.cli.ops_render import as_row, print_failed, print_history, print_trail
from payhooks.providers.generic.settings import GenericSettings
from payhooks.providers.kit.receiver_errors import WebhookError
from payhooks.settings import Settings
from payhooks.storage import redis_connect


def run_ops(settings: Settings, args: argparse.Namespace) -> int:
    redis_url = settings.require_redis()
    redis = redis_connect.sync_client(settings)
    try:
        ops = Ops(settings, redis)
        if args.command == "trace":
            return _trace(ops, args)
        if args.command == "replay-event":
            return _replay_event(ops, args)
        return _failed(ops, args)
    except CommandError as exc:
        return report_error(exc, as_json=args.json)
    except WebhookError as exc:
        return report_error(
            CommandError(
                f"the stored webhook no longer normalises: {exc.message}", code="not_normalised"
            ),
            as_json=args.json,
        )
    except ValueError as exc:
        return report_error(CommandError(str(exc), code="usage", exit_code=2), as_json=args.json)
    except RedisError as exc:
        return report_error(redis_unreachable(redis_url, exc), as_json=args.json)
    finally:
        redis.close()


def _filters(ops: Ops, args: argparse.Namespace) -> Filters:
    filters = Filters(
        provider=args.provider,
        invoice=args.invoice,
        error_class=args.error_class,
        since=parse_since(args.since) if args.since else None,
    )
    _check_generic_source(ops, args.provider)
    if args.error_class and args.error_class not in known_error_classes():
        # Not one of ours (RQ's own, such as AbandonedJobError, are fine if present): most
        # likely a typo, which would otherwise show as an empty table.
        present = sorted({j.error_class for j in ops.failed_jobs(Filters())[0]})
        if args.error_class not in present:
            raise ValueError(
                f"--error-class: no failed job has error class {args.error_class!r} "
                f"(failed jobs now have: {', '.join(present) or 'none'})"
            )
    return filters


def _check_generic_source(ops: Ops, provider: str | None) -> None:
    """`generic/<source>` must be a configured source, when this environment configures any.

    Without the receiver's GENERIC_WEBHOOK_SECRETS there is nothing to check against; a
    source since removed still matches while failed jobs of it remain."""
    sources = ops.settings.provider(GenericSettings).webhook_secrets
    if not (provider and provider.startswith("generic/") and sources):
        return
    if provider.removeprefix("generic/") in sources:
        return
    if any(j.provider == provider for j in ops.failed_jobs(Filters())[0]):
        return
    configured = ", ".join(f"generic/{source}" for source in sources)
    raise ValueError(f"--provider: no generic source {provider!r}; configured: {configured}")


def _failed(ops: Ops, args: argparse.Namespace) -> int:
    if args.action == "list":
        jobs, expired = ops.failed_jobs(_filters(ops, args))
        if args.json:
            emit([as_row(j) for j in jobs])
            return 0
        print_failed(jobs, sys.stdout, as_json=False, wide=args.wide)
        if expired:
            print(f"({len(expired)} entries whose job has expired were skipped)")
        return 0
    if args.action == "show":
        return _show(ops, args)
    if args.action == "replay":
        return _replay(ops, args)
    return _purge(ops, args)


def _show(ops: Ops, args: argparse.Namespace) -> int:
    try:
        history = ops.history(ops.resolve(args.job_id))
    except NoSuchJobError:
        raise CommandError(
            f"no job {args.job_id}: it has expired (failed jobs are kept "
            f"{ops.settings.failed_job_retention_days} days) or never existed; "
            "`payhooks trace <event id>` shows the event's trail",
            code="not_found",
        ) from None
    if args.json:
        emit(
            {
                **{k: v for k, v in asdict(history).items() if k != "current_failure"},
                "current_failure": asdict(history.current_failure)
                if history.current_failure
                else None,
            }
        )
        return 0
    print_history(history, sys.stdout)
    return 0


def _replay(ops: Ops, args: argparse.Namespace) -> int:
    filters = _filters(ops, args)
    if args.all == bool(args.job_ids):
        raise CommandError("name job ids, or use --all with filters", code="usage", exit_code=2)
    if args.job_ids and filters.any:
        raise CommandError("filters go with --all, not with job ids", code="usage", exit_code=2)
    if args.job_ids and args.dry_run:
        _named_jobs(ops, args.job_ids)
        if args.json:
            emit({"would_replay": args.job_ids})
        else:
            print(f"would replay: {' '.join(args.job_ids)}")
        return 0
    if args.job_ids:
        replayed, skipped = ops.replay(_named_jobs(ops, args.job_ids))
    else:
        selected = _replay_selection(ops, filters, args)
        if selected is None:
            return 0
        replayed, skipped = selected
    if args.json:
        emit({"replayed": replayed, "skipped": skipped})
    else:
        print(f"replayed {len(replayed)}, skipped {len(skipped)}")
        for line in skipped:
            print(f"  skipped {line}")
    return 0


def _named_jobs(ops: Ops, references: list[str]) -> list[str]:
    """The job ids named, each one a job that exists or existed (its trail or the failed
    registry says so); otherwise not found, before anything is touched."""
    ids = [ops.resolve(reference) for reference in references]
    unknown = [r for r, job_id in zip(references, ids, strict=True) if not ops.existed(job_id)]
    if unknown:
        raise CommandError(
            f"no job {', '.join(unknown)}: never existed, or it and its trail have expired "
            f"(events are kept {ops.settings.event_retention_days} days); "
            "`payhooks failed list` shows the failed jobs",
            code="not_found",
        )
    return ids


def _replay_selection(
    ops: Ops, filters: Filters, args: argparse.Namespace
) -> tuple[list[str], list[str]] | None:
    """Replay every failed job the filters select, once confirmed; None if nothing ran."""
    jobs, expired = ops.failed_jobs(filters)
    if not args.json:
        print(f"{len(jobs)} failed job(s) to replay:")
        print_failed(jobs, sys.stdout, as_json=False)
    if args.dry_run or not jobs:
        if args.json:
            emit({"would_replay": [j.job_id for j in jobs]} if args.dry_run else {"replayed": []})
        return None
    if not confirm(f"Replay {len(jobs)} job(s)?", assume_yes=args.yes):
        raise CommandError(
            "nothing replayed (use --yes to replay without asking)", code="not_confirmed"
        )
    replayed, skipped = ops.replay(j.job_id for j in jobs)
    return replayed, skipped + [f"{job_id}: the job has expired" for job_id in expired]


def _purge(ops: Ops, args: argparse.Namespace) -> int:
    filters = _filters(ops, args)
    if args.job_ids and (args.all or filters.any):
        raise CommandError(
            "name job ids, or select with filters or --all, not both", code="usage", exit_code=2
        )
    if not (args.job_ids or args.all or filters.any):
        # Purging deletes what a person must still look at: never by default.
        raise CommandError(
            "purge needs job ids, a filter (--provider, --invoice, --error-class, --since) "
            "or --all for every failed job",
            code="usage",
            exit_code=2,
        )
    if args.job_ids:
        ids, expired = _named_jobs(ops, args.job_ids), list[str]()
        jobs = [j for j in ops.failed_jobs(Filters())[0] if j.job_id in set(ids)]
    else:
        jobs, expired = ops.failed_jobs(filters)
        ids = [j.job_id for j in jobs]
    if not args.json:
        print(f"{len(jobs)} failed job(s) to purge:")
        print_failed(jobs, sys.stdout, as_json=False)
    if args.dry_run:
        if args.json:
            emit({"would_purge": ids})
        return 0
    if ids and not confirm(f"Delete {len(ids)} failed job(s)?", assume_yes=args.yes):
        raise CommandError(
            "nothing purged (use --yes to purge without asking)", code="not_confirmed"
        )
    purged = ops.purge(ids + expired)
    if args.json:
        emit({"purged": purged})
    else:
        print(f"purged {purged}")
    return 0


def _trace(ops: Ops, args: argparse.Namespace) -> int:
    reference = args.reference.strip()
    kept = f"kept {ops.settings.event_retention_days} days"
    found = ops.find_event(reference)
    if found is None and reference.isdigit():
        event_keys = ops.trail.events_for_invoice(int(reference))
        if not event_keys:
            raise CommandError(
                f"no events recorded for invoice {reference} ({kept})", code="not_found"
            )
    elif found is None:
        raise CommandError(f"no trail for event {reference} ({kept})", code="not_found")
    else:
        event_keys = [found]
    print_trail(ops.trails(event_keys), sys.stdout, as_json=args.json)
    return 0


def _replay_event(ops: Ops, args: argparse.Namespace) -> int:
    event_key = ops.find_event(args.event_id)
    if event_key is None:
        raise CommandError(
            f"no trail for event {args.event_id} (kept {ops.settings.event_retention_days} days)",
            code="not_found",
        )
    message = ops.replay_event(event_key)
    queued = "queued" in message or "already" in message
    if args.json:
        if not queued:
            raise CommandError(message, code="not_replayed")
        emit({"event_key": event_key, "message": message})
    else:
        print(message)
    return 0 if queued else 1
