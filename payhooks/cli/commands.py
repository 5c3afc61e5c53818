"""The `payhooks` commands: for each, what `--help` says of it, its arguments, what runs it.

A command is a `Command`, named once in main.py's table. What runs it imports the
command's own module only when it runs, so a command pays for its own imports alone
(`payhooks healthcheck` runs every few seconds in a container).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from payhooks.cli.cli_output import CommandError, redis_unreachable, report_error
from payhooks.devtools.dev_state import DevInstance
from payhooks.domain.providers import GENERIC, PROVIDER_NAMES
from payhooks.providers.tools import TOOLS
from payhooks.settings import Settings

DEFAULT_HEALTH_URL = "http://127.0.0.1:8080/healthz"


@dataclass(frozen=True, slots=True)
class Invocation:
    """A command as it was asked for: its parsed arguments and the environment it reads."""

    args: argparse.Namespace
    #: The process's environment or, for a command run next to a `payhooks dev` of this
    #: checkout with no REDIS_URL, that dev's.
    env: Mapping[str, str]
    #: That `payhooks dev`, when its environment is the one read.
    dev: DevInstance | None = None

    @property
    def as_json(self) -> bool:
        return bool(getattr(self.args, "json", False))

    def settings(self) -> Settings:
        return Settings.from_env(self.env)


@dataclass(frozen=True, slots=True)
class Command:
    #: Its line in `payhooks --help`.
    help: str
    #: Adds its arguments (and subcommands) to its parser.
    arguments: Callable[[argparse.ArgumentParser], None]
    #: Runs it; the exit status.
    run: Callable[[Invocation], int]
    #: Run next to a `payhooks dev` of this checkout with no REDIS_URL, it reads that dev's
    #: settings, so ops commands need no set-up there.
    next_to_dev: bool = False


def _no_arguments(parser: argparse.ArgumentParser) -> None:
    pass


# -- the processes ---------------------------------------------------------------------


def _serve_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="0.0.0.0")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument(
        "--workers",
        type=_positive,
        default=1,
        help="receiver processes sharing the port, e.g. one per core (default 1)",
    )


def _positive(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError("must be 1 or more")
    return number


def _serve(call: Invocation) -> int:
    from service.server import run

    return run(call.settings(), call.args.host, call.args.port, workers=call.args.workers)


SERVE = Command("run the webhook receiver", _serve_arguments, _serve)


def _worker_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--burst", action="store_true", help="drain the queue, then exit")


def _worker(call: Invocation) -> int:
    from workers import worker_process

    settings = call.settings()
    # Redis unreachable, at start-up or lost: waited for (WORKER_REDIS_PATIENCE_SECONDS),
    # then one line naming where; other errors keep their traceback: bugs.
    try:
        return worker_process.run(settings, burst=call.args.burst)
    except worker_process.RedisMayEvict as exc:
        error = CommandError(f"not starting: {exc}", code="redis_may_evict", exit_code=2)
    except worker_process.RedisStayedAway as exc:
        error = redis_unreachable(exc.redis_url, exc.cause)
    return report_error(error, as_json=False)


WORKER = Command("run an RQ worker that applies events to Nexudus", _worker_arguments, _worker)


def _scheduler(call: Invocation) -> int:
    from workers.scheduler import run_scheduler

    return run_scheduler(call.settings())


SCHEDULER = Command(
    "queue scheduled tasks (providers' polls) for the workers, one run per tick",
    _no_arguments,
    _scheduler,
)


def _dev_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--port", type=int, default=8080, help="receiver port")
    parser.add_argument("--sandbox-port", type=int, default=8090, help="Nexudus sandbox port")


def _dev(call: Invocation) -> int:
    from payhooks.devtools.dev import run_dev

    return run_dev(receiver_port=call.args.port, sandbox_port=call.args.sandbox_port)


DEV = Command(
    "embedded Redis, Nexudus sandbox, receiver and worker, for a local try-out",
    _dev_arguments,
    _dev,
)


# -- trying it out and checking it -------------------------------------------------------


def _send_test_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("provider", choices=[*PROVIDER_NAMES, GENERIC.name])
    parser.add_argument("--invoice", type=int, required=True, help="Nexudus CoworkerInvoice Id")
    parser.add_argument("--amount", default="100.00", help="major units (default 100.00)")
    parser.add_argument("--currency", default="EUR", help="ISO code (default %(default)s)")
    parser.add_argument(
        "--method",
        default="card",
        choices=["card", "us_bank_account", "ach_debit", "bacs_debit"],
        help="stripe only: the payment method (default %(default)s)",
    )
    parser.add_argument(
        "--url",
        help="the receiver's base URL (default: a running `payhooks dev`'s, else "
        "http://127.0.0.1:8080)",
    )
    parser.add_argument(
        "--source", default="bank", help="generic only: the source name (default %(default)s)"
    )
    parser.add_argument(
        "--sandbox-url",
        help=f"{', '.join(name for name, tools in TOOLS.items() if tools.sample_uses_sandbox)}: the dev "
        "sandbox, which registers the sample payment or signs as PayPal (default: a running "
        "`payhooks dev`'s, else http://127.0.0.1:8090)",
    )
    parser.add_argument("--json", action="store_true")


def _send_test(call: Invocation) -> int:
    from payhooks.cli.send_test import send_test

    return send_test(call.args, env=call.env, dev=call.dev)


SEND_TEST = Command(
    "send a correctly signed sample webhook", _send_test_arguments, _send_test, next_to_dev=True
)


def _check_config_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--role",
        choices=["serve", "worker", "all"],
        default="all",
        help="check what this role needs to start (default: both)",
    )
    parser.add_argument(
        "--probe",
        action="store_true",
        help="also reach Redis, take a Nexudus token and make one read-only call per "
        "provider API key configured",
    )
    parser.add_argument("--json", action="store_true", help="one JSON object, for scripts")


def _check_config(call: Invocation) -> int:
    settings = call.settings()
    from payhooks.cli.config_check import check_config

    return check_config(
        settings,
        role=call.args.role,
        probe=call.args.probe,
        as_json=call.as_json,
        dev=call.dev,
        env=call.env,
    )


CHECK_CONFIG = Command(
    "validate the environment and say what is configured (no secrets)",
    _check_config_arguments,
    _check_config,
    next_to_dev=True,
)


def _healthcheck_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--url",
        help=f"the receiver's full health URL (default: a running `payhooks dev`'s, else "
        f"{DEFAULT_HEALTH_URL})",
    )
    parser.add_argument("--worker", action="store_true", help="check a worker instead")
    parser.add_argument("--json", action="store_true")


def _healthcheck(call: Invocation) -> int:
    from payhooks.cli.health import healthcheck

    url = call.args.url or (call.dev.healthz_url if call.dev else DEFAULT_HEALTH_URL)
    return healthcheck(url=url, worker=call.args.worker, env=call.env, as_json=call.as_json)


HEALTHCHECK = Command(
    "exit 0 when this container is healthy",
    _healthcheck_arguments,
    _healthcheck,
    next_to_dev=True,
)


# -- ops: failed jobs, trails, replays, unprocessed webhooks ------------------------------


def _filters(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--provider", help=f"{', '.join(PROVIDER_NAMES)}, generic or generic/<source>"
    )
    parser.add_argument("--invoice", help="Nexudus invoice Id")
    parser.add_argument("--error-class", help="e.g. InvoiceNotFound, NexudusPermanentError")
    parser.add_argument("--since", help="30m, 2h, 3d, or a date such as 2026-11-20")


def _failed_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", required=True)
    listing = actions.add_parser("list", help="failed jobs, oldest first")
    _filters(listing)
    listing.add_argument("--json", action="store_true")
    listing.add_argument(
        "--wide", action="store_true", help="every column, reasons whole (wider than 100)"
    )
    show = actions.add_parser(
        "show", help="one job: its status now, its runs, failures and replays, its event trail"
    )
    show.add_argument("job_id", help="a job id, or its event (an event id as `trace` takes it)")
    show.add_argument("--json", action="store_true")
    replay = actions.add_parser("replay", help="requeue failed jobs (idempotent)")
    replay.add_argument("job_ids", nargs="*", help="job ids, or their events (as `trace` takes)")
    replay.add_argument("--all", action="store_true", help="every failed job matching the filters")
    _filters(replay)
    replay.add_argument("--dry-run", action="store_true", help="show what would be replayed")
    replay.add_argument("--yes", action="store_true", help="do not ask before a bulk replay")
    replay.add_argument("--json", action="store_true")
    purge = actions.add_parser(
        "purge", help="delete failed jobs: named ones, those matching filters, or --all"
    )
    purge.add_argument("job_ids", nargs="*", help="job ids, or their events (as `trace` takes)")
    purge.add_argument("--all", action="store_true", help="every failed job (or with filters)")
    _filters(purge)
    purge.add_argument("--dry-run", action="store_true", help="show what would be purged")
    purge.add_argument("--yes", action="store_true", help="do not ask")
    purge.add_argument("--json", action="store_true")


def _trace_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "reference",
        help="a provider event id (evt_…, EV…, a notification or webhook id, or provider:id) "
        "or a Nexudus invoice Id",
    )
    parser.add_argument("--json", action="store_true")


def _replay_event_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("event_id", help="a provider event id, as `trace` shows it")
    parser.add_argument("--json", action="store_true")


def _ops(call: Invocation) -> int:
    settings = call.settings()
    from payhooks.cli.ops_cli import run_ops

    return run_ops(settings, call.args)


FAILED = Command("inspect, replay and purge failed jobs", _failed_arguments, _ops, next_to_dev=True)
TRACE = Command(
    "the history of an event, or of an invoice's events",
    _trace_arguments,
    _ops,
    next_to_dev=True,
)
REPLAY_EVENT = Command(
    "re-normalise a stored webhook with the current code and queue it",
    _replay_event_arguments,
    _ops,
    next_to_dev=True,
)


def _unprocessed_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", required=True)
    listing = actions.add_parser("list", help="oldest first, with the reason")
    listing.add_argument("--json", action="store_true")
    show = actions.add_parser("show", help="one webhook: reason, headers and stored body")
    show.add_argument("id", help="the id from `list` (or at least its first 8 characters)")
    show.add_argument("--json", action="store_true")
    replay = actions.add_parser(
        "replay", help="normalise with the current code and queue the events (idempotent)"
    )
    replay.add_argument("ids", nargs="+")
    replay.add_argument("--json", action="store_true")
    dismiss = actions.add_parser("dismiss", help="take off the list once handled by hand")
    dismiss.add_argument("ids", nargs="+")
    dismiss.add_argument("--json", action="store_true")


def _unprocessed(call: Invocation) -> int:
    settings = call.settings()
    from payhooks.cli.unprocessed_cli import run_unprocessed

    return run_unprocessed(settings, call.args)


UNPROCESSED = Command(
    "verified webhooks the receiver could not normalise: list, show, replay, dismiss",
    _unprocessed_arguments,
    _unprocessed,
    next_to_dev=True,
)


def _window_arguments(parser: argparse.ArgumentParser) -> None:
    """Providers and a window of time: what reconcile and audit read."""
    parser.add_argument(
        "providers",
        nargs="*",
        metavar="PROVIDER",
        help=f"{', '.join([*PROVIDER_NAMES, GENERIC.name])} (default: every one configured)",
    )
    parser.add_argument(
        "--since", required=True, help="2h, 3d, or an ISO 8601 time such as 2026-11-20T09:00Z"
    )
    parser.add_argument("--until", help="as --since (default: now)")
    parser.add_argument("--json", action="store_true")


def _reconcile_arguments(parser: argparse.ArgumentParser) -> None:
    _window_arguments(parser)
    parser.add_argument(
        "--dry-run", action="store_true", help="count what would be queued; write nothing"
    )


def _reconcile(call: Invocation) -> int:
    settings = call.settings()
    from payhooks.cli.reconcile import run_reconcile

    return run_reconcile(settings, call.args)


RECONCILE = Command(
    "ask providers' APIs what happened and queue what no webhook brought (idempotent)",
    _reconcile_arguments,
    _reconcile,
    next_to_dev=True,
)


def _audit(call: Invocation) -> int:
    settings = call.settings()
    from payhooks.cli.audit import run_audit

    return run_audit(settings, call.args)


AUDIT = Command(
    "check that what providers say was paid is applied in Nexudus; exit 1 on discrepancies",
    _window_arguments,
    _audit,
    next_to_dev=True,
)
