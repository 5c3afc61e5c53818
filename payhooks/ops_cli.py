"""The ops subcommands of `payhooks`: argument handling and output around payhooks.ops."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict

from redis.exceptions import RedisError

from payhooks import redis_connect
from payhooks.ops import (
    Filters,
    Ops,
    confirm,
    describe,
    parse_since,
    print_failed,
    print_trail,
)
from payhooks.settings import Settings
from service.errors import WebhookError


def run_ops(settings: Settings, args: argparse.Namespace) -> int:
    redis = redis_connect.sync_client(settings)
    ops = Ops(settings, redis)
    try:
        if args.command == "trace":
            return _trace(ops, args)
        if args.command == "replay-event":
            return _replay_event(ops, args)
        return _failed(ops, args)
    except WebhookError as exc:
        print(f"payhooks: the stored webhook no longer normalises: {exc.message}", file=sys.stderr)
        return 1
    except ValueError as exc:
        print(f"payhooks: {exc}", file=sys.stderr)
        return 2
    except RedisError as exc:
        print(f"payhooks: Redis unavailable ({exc.__class__.__name__})", file=sys.stderr)
        return 1
    finally:
        redis.close()


def _filters(args: argparse.Namespace) -> Filters:
    return Filters(
        provider=args.provider,
        invoice=args.invoice,
        error_class=args.error_class,
        since=parse_since(args.since) if args.since else None,
    )


def _failed(ops: Ops, args: argparse.Namespace) -> int:
    out = sys.stdout
    if args.action == "list":
        jobs, expired = ops.failed_jobs(_filters(args))
        print_failed(jobs, out, as_json=args.json)
        if expired and not args.json:
            print(f"({len(expired)} entries whose job has expired were skipped)", file=out)
        return 0
    if args.action == "show":
        from rq.exceptions import NoSuchJobError
        from rq.job import Job

        try:
            job = Job.fetch(args.job_id, connection=ops.redis)
        except NoSuchJobError:
            print(f"no job {args.job_id}: it has expired or never existed", file=sys.stderr)
            return 1
        failed = describe(job)
        if args.json:
            print(
                json.dumps(
                    {
                        "job": asdict(failed),
                        "trail": ops.trail.history(failed.event_key),
                    },
                    indent=2,
                )
            )
            return 0
        for name, value in asdict(failed).items():
            print(f"{name:<12} {value}")
        print(f"{'status':<12} {job.get_status().value}")
        print()
        print_trail(ops, [failed.event_key], out, as_json=False)
        return 0
    if args.action == "replay":
        return _replay(ops, args)
    return _purge(ops, args)


def _replay(ops: Ops, args: argparse.Namespace) -> int:
    if args.all == bool(args.job_ids):
        print("payhooks: name job ids, or use --all with filters", file=sys.stderr)
        return 2
    if args.job_ids and any((args.provider, args.invoice, args.error_class, args.since)):
        print("payhooks: filters go with --all, not with job ids", file=sys.stderr)
        return 2
    if args.job_ids and args.dry_run:
        print(f"would replay: {' '.join(args.job_ids)}")
        return 0
    if args.job_ids:
        replayed, skipped = ops.replay(args.job_ids)
    else:
        jobs, expired = ops.failed_jobs(_filters(args))
        if not args.json:
            print(f"{len(jobs)} failed job(s) to replay:")
            print_failed(jobs, sys.stdout, as_json=False)
        if args.dry_run:
            if args.json:
                print(json.dumps({"would_replay": [j.job_id for j in jobs]}, indent=2))
            return 0
        if not jobs:
            return 0
        if not confirm(f"Replay {len(jobs)} job(s)?", assume_yes=args.yes):
            print("nothing replayed (use --yes to replay without asking)")
            return 1
        replayed, skipped = ops.replay(j.job_id for j in jobs)
        skipped += [f"{job_id}: the job has expired" for job_id in expired]
    if args.json:
        print(json.dumps({"replayed": replayed, "skipped": skipped}, indent=2))
    else:
        print(f"replayed {len(replayed)}, skipped {len(skipped)}")
        for line in skipped:
            print(f"  skipped {line}")
    return 0


def _purge(ops: Ops, args: argparse.Namespace) -> int:
    jobs, expired = ops.failed_jobs(_filters(args))
    if not args.json:
        print(f"{len(jobs)} failed job(s) to purge:")
        print_failed(jobs, sys.stdout, as_json=False)
    if jobs and not confirm(f"Delete {len(jobs)} failed job(s)?", assume_yes=args.yes):
        print("nothing purged (use --yes to purge without asking)")
        return 1
    purged = ops.purge([j.job_id for j in jobs] + expired)
    if args.json:
        print(json.dumps({"purged": purged}))
    else:
        print(f"purged {purged}")
    return 0


def _trace(ops: Ops, args: argparse.Namespace) -> int:
    reference = args.reference.strip()
    found = ops.find_event(reference)
    if found is None and reference.isdigit():
        event_keys = ops.trail.events_for_invoice(int(reference))
        if not event_keys:
            print(
                f"no events recorded for invoice {reference} (kept EVENT_RETENTION_DAYS days)",
                file=sys.stderr,
            )
            return 1
    elif found is None:
        print(f"no trail for event {reference} (kept EVENT_RETENTION_DAYS days)", file=sys.stderr)
        return 1
    else:
        event_keys = [found]
    print_trail(ops, event_keys, sys.stdout, as_json=args.json)
    return 0


def _replay_event(ops: Ops, args: argparse.Namespace) -> int:
    event_key = ops.find_event(args.event_id)
    if event_key is None:
        print(
            f"no trail for event {args.event_id} (kept EVENT_RETENTION_DAYS days)", file=sys.stderr
        )
        return 1
    message = ops.replay_event(event_key)
    print(message)
    return 0 if ("queued" in message or "already" in message) else 1
