"""Killing a process the way a node dies: with everything it started.

RQ's work horse puts itself in a process group of its own (``os.setpgrp`` after the fork),
so ``killpg`` on a worker misses the horse, which then finishes its job as if nothing had
happened: a "crash" that is no crash. These walk ``/proc`` for descendants instead.
"""

from __future__ import annotations

import contextlib
import os
import signal
from pathlib import Path


def descendants(pid: int) -> list[int]:
    """Every process below ``pid``, children before grandchildren (Linux ``/proc``)."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            # The command name may hold spaces and parentheses: fields start after the last ")".
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:
            continue  # gone meanwhile
        parents[int(stat.parent.name)] = int(fields[1])
    found: list[int] = []
    frontier = [pid]
    while frontier:
        children = [child for child, parent in parents.items() if parent in frontier]
        found += children
        frontier = children
    return found


def kill_tree(pid: int, sig: signal.Signals = signal.SIGKILL) -> None:
    """``sig`` to ``pid`` and every process below it, the process itself first (so it
    starts nothing new), then what it had started."""
    below = descendants(pid)
    for target in (pid, *below):
        with contextlib.suppress(ProcessLookupError):
            os.kill(target, sig)
