"""The `payhooks` command's entry point: main, quiet when its reader goes away.

`payhooks trace 42 | head -2` closes the pipe after two lines; Python then raises
BrokenPipeError on the next write (or on the final flush, at exit). Unix tools end
quietly there, killed by SIGPIPE; Python ignores SIGPIPE, which its sockets need, so the
error is caught here instead: no traceback, the exit status a shell reports for a tool
killed by SIGPIPE (141).
"""

from __future__ import annotations

import os
import signal
import sys

from payhooks.cli.main import main as cli_main

CLOSED_PIPE_EXIT = 128 + signal.SIGPIPE


def main() -> int:
    try:
        code = cli_main()
        sys.stdout.flush()  # inside the guard: a closed pipe may show only here
    except BrokenPipeError:
        # Whatever is still buffered for stdout can go nowhere: point it at /dev/null so
        # the interpreter's own flush at exit does not complain again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return CLOSED_PIPE_EXIT
    return code
