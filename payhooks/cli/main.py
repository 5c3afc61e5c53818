"""payhooks: payment-provider webhooks to Nexudus invoices, exactly once.

Settings come from the environment (see the README's configuration table).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import NoReturn, cast

from payhooks.cli import commands
from payhooks.cli.cli_output import CommandError, report_error
from payhooks.cli.commands import Command, Invocation
from payhooks.devtools import dev_state
from payhooks.settings import ConfigError

#: Every command, in the order `payhooks --help` lists them: a new one is one line here
#: (its arguments and what runs it are a `Command` in commands.py).
COMMANDS: dict[str, Command] = {
    "serve": commands.SERVE,
    "worker": commands.WORKER,
    "scheduler": commands.SCHEDULER,
    "dev": commands.DEV,
    "send-test": commands.SEND_TEST,
    "check-config": commands.CHECK_CONFIG,
    "healthcheck": commands.HEALTHCHECK,
    "failed": commands.FAILED,
    "trace": commands.TRACE,
    "replay-event": commands.REPLAY_EVENT,
    "unprocessed": commands.UNPROCESSED,
    "reconcile": commands.RECONCILE,
    "audit": commands.AUDIT,
}


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
    subparsers = cast(
        "argparse._SubParsersAction[argparse.ArgumentParser]",
        parser.add_subparsers(dest="command", required=True),
    )
    for name, command in COMMANDS.items():
        command.arguments(subparsers.add_parser(name, help=command.help))
    args = parser.parse_args(argv)
    command = COMMANDS[args.command]
    call = Invocation(args, os.environ)
    try:
        if command.next_to_dev:
            # Next to a running `payhooks dev` of this checkout: no set-up needed.
            env, dev = dev_state.environment(os.environ)
            call = Invocation(args, env, dev)
        return command.run(call)
    except ConfigError as exc:
        message = f"configuration error: {exc}"
        if command.next_to_dev and "REDIS_URL" in str(exc):
            message += "; or run this next to a running `payhooks dev` of this checkout"
        return report_error(
            CommandError(message, code="configuration", exit_code=2), as_json=call.as_json
        )


if __name__ == "__main__":
    sys.exit(main())
