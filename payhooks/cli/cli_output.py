"""How every `payhooks` command reports: text for people, or with --json, JSON on stdout.

An error is a JSON object on stdout too (``{"error": {"code": …, "message": …}}``) with
a non-zero exit, so a script reads one stream and checks the exit code.
"""

from __future__ import annotations

import json
import sys
import textwrap
from typing import Any

from payhooks.settings import redact_url

#: What a terminal shows without wrapping: text output fits it (--wide or --json for all).
COLUMNS = 100


def wrapped(text: str, *, lead: str = "", indent: int | None = None) -> str:
    """``lead`` then the text, wrapped within COLUMNS under itself, never cut (a word
    longer than the line, a URL say, stays whole)."""
    lines = textwrap.wrap(
        text,
        COLUMNS,
        initial_indent=lead,
        subsequent_indent=" " * (len(lead) if indent is None else indent),
        break_long_words=False,
        break_on_hyphens=False,
    )
    return "\n".join(lines) or lead.rstrip()


def labelled(label: str, value: str, *, width: int, indent: str = "") -> str:
    """``label value`` as the commands print settings and fields, the value wrapped."""
    return wrapped(value, lead=f"{indent}{label:<{width}} ")


class CommandError(Exception):
    """A command that cannot do what was asked; the message says why and what to do."""

    def __init__(self, message: str, *, code: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.exit_code = exit_code


def redis_unreachable(redis_url: str, exc: BaseException) -> CommandError:
    """Redis did not answer: name where (password masked) and how it failed."""
    return CommandError(
        f"could not reach Redis at {redact_url(redis_url)} ({exc.__class__.__name__})",
        code="redis_unreachable",
    )


def emit(data: Any) -> None:
    print(json.dumps(data, indent=2, default=str))


def report_error(error: CommandError, *, as_json: bool) -> int:
    if as_json:
        emit({"error": {"code": error.code, "message": error.message}})
    else:
        print(f"payhooks: {error.message}", file=sys.stderr)
    return error.exit_code


def confirm(question: str, *, assume_yes: bool) -> bool:
    """A person's yes, asked on the terminal; no without one (piped, or not answered)."""
    if assume_yes:
        return True
    if not sys.stdin.isatty():
        return False
    print(f"{question} [y/N] ", end="", file=sys.stderr, flush=True)  # not into piped output
    try:
        return sys.stdin.readline().strip().lower() in ("y", "yes")
    except (EOFError, KeyboardInterrupt):
        return False
