"""Workers: the type of the ``run_worker`` fixture, and those outside it: the `payhooks`
command line, its environment, a burst worker."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from redis import Redis
from rq import Queue, SimpleWorker

from payhooks.devtools.process_tree import kill_tree
from payhooks.providers.stripe.sample import DEV_WEBHOOK_SECRET as STRIPE_SECRET
from payhooks.settings import Settings

#: The type of the ``run_worker`` fixture (tests/conftest.py): drain the queue with a real
#: RQ worker in burst mode, built from the fixture's settings.
RunWorker = Callable[[], None]


def run_burst_worker(settings: Settings, redis: Redis, queue: Queue) -> None:
    """Drain the queue with a worker built from these settings (not the fixture's)."""
    from workers import context

    ctx = context.build_context(settings)
    previous = context.install(ctx)
    try:
        SimpleWorker([queue], connection=redis).work(burst=True)
    finally:
        context.install(previous)
        ctx.close()


#: The command line as a user runs it.
PAYHOOKS = [sys.executable, "-m", "payhooks.cli"]


def worker_env(settings: Settings, **extra: str) -> dict[str, str]:
    """The environment of a `payhooks worker` process for these settings (limits off)."""
    return {
        "PATH": os.environ.get("PATH", ""),
        "REDIS_URL": settings.require_redis(),
        "NEXUDUS_BASE_URL": settings.nexudus_base_url,
        "NEXUDUS_USERNAME": settings.nexudus_username or "",
        "NEXUDUS_PASSWORD": settings.nexudus_password or "",
        "NEXUDUS_WRITES_PER_MINUTE": "10000",
        "NEXUDUS_CALLS_PER_MINUTE": "10000",
        "NEXUDUS_MIN_INTERVAL_MS": "0",
        "JOB_RETRY_BASE_SECONDS": "0",
        "STRIPE_WEBHOOK_SECRETS": STRIPE_SECRET,
        **extra,
    }


class Started:
    """The processes one test started: each in a session of its own (so its RQ work horses
    go with it), its stderr to a file (a pipe nobody reads fills, and a worker blocked
    writing a log line holds its invoice lock: the other workers then wait on it), and all
    of them stopped when the test ends, passed or failed (the ``processes`` fixture).

    ``wait`` waits for exits by a deadline; one that does not exit in time fails the test
    with what each live process was doing (its threads' stacks, from the handler
    `payhooks worker` installs for SIGUSR1) and the end of its stderr.
    """

    def __init__(self, directory: Path) -> None:
        self._directory = directory
        self._started: list[tuple[subprocess.Popen[bytes], Path]] = []

    def start(
        self, command: Sequence[str], env: Mapping[str, str], **options: Any
    ) -> subprocess.Popen[bytes]:
        log = self._directory / f"process-{len(self._started)}"
        with log.with_suffix(".stdout").open("wb") as stdout, log.open("wb") as stderr:
            process = subprocess.Popen(
                list(command),
                env=dict(env),
                stdout=stdout,
                stderr=stderr,
                start_new_session=True,
                **options,
            )
        self._started.append((process, log))
        return process

    def stdout(self, process: subprocess.Popen[bytes]) -> bytes:
        return self._log_of(process).with_suffix(".stdout").read_bytes()

    def stderr(self, process: subprocess.Popen[bytes]) -> bytes:
        return self._log_of(process).read_bytes()

    def wait(self, *processes: subprocess.Popen[bytes], timeout: float) -> list[int]:
        """Each one's exit status, once all have exited within ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        for process in processes:
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                raise AssertionError(self._stuck(processes, timeout)) from None
        return [process.returncode for process in processes]

    def stop_all(self) -> None:
        for process, _ in self._started:
            if process.poll() is None:
                kill_tree(process.pid)  # RQ's work horses are in process groups of their own
                process.wait(timeout=30)

    def _stuck(self, processes: Sequence[subprocess.Popen[bytes]], timeout: float) -> str:
        live = [p for p in processes if p.poll() is None]
        for process in live:
            with contextlib.suppress(ProcessLookupError):
                os.kill(process.pid, signal.SIGUSR1)  # faulthandler: every thread's stack
        dumped = time.monotonic() + 5
        while time.monotonic() < dumped and not all(
            b"most recent call first" in self.stderr(p) for p in live
        ):
            time.sleep(0.05)
        report = [f"{len(live)} of {len(processes)} processes still running after {timeout} s"]
        for process in live:
            report.append(f"--- {' '.join(map(str, process.args))} (pid {process.pid}):")  # type: ignore[arg-type]
            report.append(self.stderr(process)[-6000:].decode(errors="replace"))
        return "\n".join(report)

    def _log_of(self, process: subprocess.Popen[bytes]) -> Path:
        return next(log for started, log in self._started if started is process)
