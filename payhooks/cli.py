"""The `payhooks` command: serve, worker, dev, send-test.

Settings are read from the environment once, here, and passed down.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from payhooks.settings import ConfigError, Settings


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="payhooks", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the webhook receiver")
    serve.add_argument("--host", default="0.0.0.0")
    serve.add_argument("--port", type=int, default=8080)

    worker = commands.add_parser("worker", help="run an RQ worker that applies events to Nexudus")
    worker.add_argument("--burst", action="store_true", help="drain the queue, then exit")

    dev = commands.add_parser(
        "dev", help="embedded Redis, Nexudus sandbox, receiver and worker, for a local try-out"
    )
    dev.add_argument("--port", type=int, default=8080, help="receiver port")
    dev.add_argument("--sandbox-port", type=int, default=8090, help="Nexudus sandbox port")

    send = commands.add_parser("send-test", help="send a correctly signed sample webhook")
    send.add_argument("provider", choices=["stripe", "gocardless"])
    send.add_argument("--invoice", type=int, required=True, help="Nexudus CoworkerInvoice Id")
    send.add_argument("--amount", default="100.00", help="major units (default 100.00)")
    send.add_argument("--currency", default="EUR")
    send.add_argument(
        "--method", default="card", choices=["card", "us_bank_account", "ach_debit", "bacs_debit"]
    )
    send.add_argument("--url", default="http://127.0.0.1:8080", help="the receiver's base URL")
    send.add_argument(
        "--sandbox-url",
        default="http://127.0.0.1:8090",
        help="gocardless only: the dev sandbox, where the sample payment is registered",
    )

    args = parser.parse_args(argv)
    try:
        if args.command == "dev":
            from payhooks.dev import run_dev

            return run_dev(receiver_port=args.port, sandbox_port=args.sandbox_port)
        if args.command == "send-test":
            from payhooks.send_test import send_test

            return send_test(args)
        settings = Settings.from_env()
        if args.command == "serve":
            return _serve(settings, args.host, args.port)
        return _work(settings, burst=args.burst)
    except ConfigError as exc:
        print(f"payhooks: configuration error: {exc}", file=sys.stderr)
        return 2


def _serve(settings: Settings, host: str, port: int) -> int:
    from aiohttp import web

    from payhooks import logs
    from service.app import create_app

    settings.check_receiver()
    logs.configure(settings.log_format, settings.log_level)
    # run_app answers SIGTERM by closing the listener and letting in-flight requests
    # (and their enqueue) finish before the process exits.
    web.run_app(
        create_app(settings),
        host=host,
        port=port,
        access_log=None,
        print=None,
        shutdown_timeout=30,
    )
    return 0


def _work(settings: Settings, *, burst: bool) -> int:
    from redis import Redis
    from rq import Queue, Worker

    from payhooks import logs
    from workers import context

    settings.check_worker()
    logs.configure(settings.log_format, settings.log_level)
    context.install(context.build_context(settings))
    connection = Redis.from_url(settings.require_redis())
    queue = Queue(settings.queue_name, connection=connection)
    Worker([queue], connection=connection).work(
        burst=burst, with_scheduler=True, logging_level=settings.log_level
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
