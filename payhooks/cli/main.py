"""payhooks: payment-provider webhooks to Nexudus invoices, exactly once.

Settings come from the environment (see the README's configuration table).
"""

from __future__ import annotations

import argparse
import faulthandler
import os
import signal
import sys
from collections.abc import Sequence
from typing import NoReturn, cast

from payhooks.cli import dev_state
from payhooks.cli.cli_output import CommandError, report_error
from payhooks.domain.providers import GENERIC, PROVIDER_NAMES
from payhooks.providers.tools import TOOLS
from payhooks.settings import ConfigError, Settings

DEFAULT_HEALTH_URL = "http://127.0.0.1:8080/healthz"
#: Commands that read a running `payhooks dev`'s settings when REDIS_URL is not set.
OPS_COMMANDS = frozenset(
    {"failed", "trace", "replay-event", "unprocessed", "check-config", "healthcheck", "send-test"}
)


class _Parser(argparse.ArgumentParser):
    """argparse, whose usage errors come as a JSON object when --json was asked for."""

    json_requested = False

    def error(self, message: str) -> NoReturn:
        if self.json_requested:
            report_error(CommandError(message, code="usage", exit_code=2), as_json=True)
            sys.exit(2)
        super().error(message)


def main(argv: Sequence[str] | None = None) -> int:
    _Parser.json_requested = "--json" in (sys.argv[1:] if argv is None else argv)
    parser = _Parser(prog="payhooks", description=__doc__)
    # Every subparser is a _Parser too (argparse makes them of the parent's class).
    commands = cast(
        "argparse._SubParsersAction[argparse.ArgumentParser]",
        parser.add_subparsers(dest="command", required=True),
    )

    serve = commands.add_parser("serve", help="run the webhook receiver")
    serve.add_argument("--host", default="0.0.0.0")
    serve.add_argument("--port", type=int, default=8080)
    serve.add_argument(
        "--workers",
        type=_positive,
        default=1,
        help="receiver processes sharing the port, e.g. one per core (default 1)",
    )

    worker = commands.add_parser("worker", help="run an RQ worker that applies events to Nexudus")
    worker.add_argument("--burst", action="store_true", help="drain the queue, then exit")

    commands.add_parser(
        "scheduler",
        help="queue scheduled tasks (providers' polls) for the workers, one run per tick",
    )

    dev = commands.add_parser(
        "dev", help="embedded Redis, Nexudus sandbox, receiver and worker, for a local try-out"
    )
    dev.add_argument("--port", type=int, default=8080, help="receiver port")
    dev.add_argument("--sandbox-port", type=int, default=8090, help="Nexudus sandbox port")

    send = commands.add_parser("send-test", help="send a correctly signed sample webhook")
    send.add_argument("provider", choices=[*PROVIDER_NAMES, GENERIC.name])
    send.add_argument("--invoice", type=int, required=True, help="Nexudus CoworkerInvoice Id")
    send.add_argument("--amount", default="100.00", help="major units (default 100.00)")
    send.add_argument("--currency", default="EUR", help="ISO code (default %(default)s)")
    send.add_argument(
        "--method",
        default="card",
        choices=["card", "us_bank_account", "ach_debit", "bacs_debit"],
        help="stripe only: the payment method (default %(default)s)",
    )
    send.add_argument(
        "--url",
        help="the receiver's base URL (default: a running `payhooks dev`'s, else "
        "http://127.0.0.1:8080)",
    )
    send.add_argument(
        "--source", default="bank", help="generic only: the source name (default %(default)s)"
    )
    send.add_argument(
        "--sandbox-url",
        help=f"{', '.join(name for name, tools in TOOLS.items() if tools.sample_uses_sandbox)}: the dev "
        "sandbox, which registers the sample payment or signs as PayPal (default: a running "
        "`payhooks dev`'s, else http://127.0.0.1:8090)",
    )
    send.add_argument("--json", action="store_true")

    check = commands.add_parser(
        "check-config", help="validate the environment and say what is configured (no secrets)"
    )
    check.add_argument(
        "--role",
        choices=["serve", "worker", "all"],
        default="all",
        help="check what this role needs to start (default: both)",
    )
    check.add_argument(
        "--probe",
        action="store_true",
        help="also reach Redis, take a Nexudus token and make one read-only call per "
        "provider API key configured",
    )
    check.add_argument("--json", action="store_true", help="one JSON object, for scripts")

    health = commands.add_parser("healthcheck", help="exit 0 when this container is healthy")
    health.add_argument(
        "--url",
        help=f"the receiver's full health URL (default: a running `payhooks dev`'s, else "
        f"{DEFAULT_HEALTH_URL})",
    )
    health.add_argument("--worker", action="store_true", help="check a worker instead")
    health.add_argument("--json", action="store_true")

    _add_ops_commands(commands)
    from payhooks.cli.unprocessed_cli import add_unprocessed_command

    add_unprocessed_command(commands)

    args = parser.parse_args(argv)
    as_json = bool(getattr(args, "json", False))
    try:
        if args.command == "dev":
            from payhooks.devtools.dev import run_dev

            return run_dev(receiver_port=args.port, sandbox_port=args.sandbox_port)
        # Ops commands next to a running `payhooks dev` of this checkout need no set-up.
        env, dev_instance = (
            dev_state.environment(os.environ)
            if args.command in OPS_COMMANDS
            else (os.environ, None)
        )
        if args.command == "send-test":
            from payhooks.cli.send_test import send_test

            return send_test(args, env=env, dev=dev_instance)
        if args.command == "healthcheck":
            from payhooks.cli.health import healthcheck

            url = args.url or (dev_instance.healthz_url if dev_instance else DEFAULT_HEALTH_URL)
            return healthcheck(url=url, worker=args.worker, env=env, as_json=as_json)
        settings = Settings.from_env(env)
        if args.command == "check-config":
            from payhooks.cli.config_check import check_config

            return check_config(
                settings,
                role=args.role,
                probe=args.probe,
                as_json=as_json,
                dev=dev_instance,
                env=env,
            )
        if args.command == "unprocessed":
            from payhooks.cli.unprocessed_cli import run_unprocessed

            return run_unprocessed(settings, args)
        if args.command in ("failed", "trace", "replay-event"):
            from payhooks.cli.ops_cli import run_ops

            return run_ops(settings, args)
        if args.command == "serve":
            return _serve(settings, args.host, args.port, args.workers)
        if args.command == "scheduler":
            from workers.scheduler import run_scheduler

            return run_scheduler(settings)
        return _work(settings, burst=args.burst)
    except ConfigError as exc:
        message = f"configuration error: {exc}"
        if args.command in OPS_COMMANDS and "REDIS_URL" in str(exc):
            message += "; or run this next to a running `payhooks dev` of this checkout"
        return report_error(
            CommandError(message, code="configuration", exit_code=2), as_json=as_json
        )


def _add_ops_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    def filters(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--provider", help=f"{', '.join(PROVIDER_NAMES)}, generic or generic/<source>"
        )
        p.add_argument("--invoice", help="Nexudus invoice Id")
        p.add_argument("--error-class", help="e.g. InvoiceNotFound, NexudusPermanentError")
        p.add_argument("--since", help="30m, 2h, 3d, or a date such as 2026-11-20")

    failed = commands.add_parser("failed", help="inspect, replay and purge failed jobs")
    actions = failed.add_subparsers(dest="action", required=True)
    listing = actions.add_parser("list", help="failed jobs, oldest first")
    filters(listing)
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
    filters(replay)
    replay.add_argument("--dry-run", action="store_true", help="show what would be replayed")
    replay.add_argument("--yes", action="store_true", help="do not ask before a bulk replay")
    replay.add_argument("--json", action="store_true")
    purge = actions.add_parser(
        "purge", help="delete failed jobs: named ones, those matching filters, or --all"
    )
    purge.add_argument("job_ids", nargs="*", help="job ids, or their events (as `trace` takes)")
    purge.add_argument("--all", action="store_true", help="every failed job (or with filters)")
    filters(purge)
    purge.add_argument("--dry-run", action="store_true", help="show what would be purged")
    purge.add_argument("--yes", action="store_true", help="do not ask")
    purge.add_argument("--json", action="store_true")

    trace = commands.add_parser("trace", help="the history of an event, or of an invoice's events")
    trace.add_argument(
        "reference",
        help="a provider event id (evt_…, EV…, a notification or webhook id, or provider:id) "
        "or a Nexudus invoice Id",
    )
    trace.add_argument("--json", action="store_true")

    replay_event = commands.add_parser(
        "replay-event", help="re-normalise a stored webhook with the current code and queue it"
    )
    replay_event.add_argument("event_id", help="a provider event id, as `trace` shows it")
    replay_event.add_argument("--json", action="store_true")


def _serve(settings: Settings, host: str, port: int, workers: int) -> int:
    from service.server import run

    return run(settings, host, port, workers=workers)


def _positive(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError("must be 1 or more")
    return number


def _work(settings: Settings, *, burst: bool) -> int:
    from payhooks import logs
    from payhooks.cli.worker_process import run_worker
    from workers import context

    settings.check_worker()
    logs.configure(settings.log_format, settings.log_level)
    # `kill -USR1 <pid>` prints what every thread of a worker that seems stuck is doing.
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    context.install(context.build_context(settings))
    # Redis unreachable, at start-up or lost: waited for (WORKER_REDIS_PATIENCE_SECONDS),
    # then one line naming where; other errors keep their traceback: bugs.
    return run_worker(settings, burst=burst)


if __name__ == "__main__":
    sys.exit(main())
