"""Serving the receiver: the HTTP server around the app, in one process or several.

aiohttp's own server closes a connection only once it has been idle for the keep-alive
time, so a sender dribbling header lines keeps it as long as it dribbles. Here each
request must complete its headers within ``ReadLimits.header_seconds`` of its first
byte (the body's deadline is the handler's, service/intake.py). Protocol errors (junk
on the port, malformed requests) are logged at WARNING without the request's bytes,
which aiohttp's own ERROR line with its traceback would quote.

``--workers N`` runs N such processes on one port (SO_REUSEPORT: the kernel spreads the
connections) under a small supervisor that forwards SIGTERM and restarts a process that
dies. Their Prometheus counters are summed through ``PROMETHEUS_MULTIPROC_DIR``.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_server import Server

from payhooks import logs
from payhooks.settings import Settings
from service.app import create_app
from service.intake import ReadLimits

log = logging.getLogger("payhooks.http")

SHUTDOWN_SECONDS = 30.0
#: Reading (and dropping) what a sender still sends after an early answer, before the
#: connection is closed: long enough for an honest client to read the answer.
LINGER_SECONDS = 1.0
#: A worker process that died this often within a minute is not restarted again: it
#: would only die again (port taken, a bug on start-up); the supervisor stops, exit 1.
MAX_DEATHS_PER_MINUTE = 3


class GuardedRequestHandler(RequestHandler):
    """aiohttp's protocol with a deadline on each request's headers and quiet errors."""

    header_seconds = 10.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._header_deadline: asyncio.TimerHandle | None = None
        self._last_payload: Any = None

    def data_received(self, data: bytes) -> None:
        payload = self._last_payload
        in_body = payload is not None and not payload.is_eof()
        before = self._request_count
        super().data_received(data)
        if self._request_count != before:  # a request's headers are complete
            if self._header_deadline is not None:
                self._header_deadline.cancel()
                self._header_deadline = None
            if self._messages:
                self._last_payload = self._messages[-1][1]
        elif data and not in_body and self._header_deadline is None:
            # The first bytes of a request whose headers are not all here yet.
            self._header_deadline = self._loop.call_later(
                self.header_seconds, self._headers_too_slow
            )

    def _headers_too_slow(self) -> None:
        self._header_deadline = None
        log.warning("http.headers_too_slow", extra={"seconds": self.header_seconds})
        self.force_close()

    def connection_lost(self, exc: BaseException | None) -> None:
        if self._header_deadline is not None:
            self._header_deadline.cancel()
            self._header_deadline = None
        self._last_payload = None
        super().connection_lost(exc)

    def log_exception(self, *args: Any, **kw: Any) -> None:
        exc = kw.get("exc_info")
        if isinstance(exc, HttpProcessingError):
            # Not our fault, and its message quotes the request (up to a whole body).
            log.warning(
                "http.protocol_error", extra={"error": exc.__class__.__name__, "status": exc.code}
            )
            return
        # Ours: where it happened, without the message (which may quote the input).
        frames = traceback.extract_tb(exc.__traceback__) if isinstance(exc, BaseException) else []
        log.error(
            "http.unhandled",
            extra={
                "error": exc.__class__.__name__ if exc is not None else "",
                "where": "".join(traceback.format_list(frames)).strip(),
            },
        )


class GuardedServer(Server):
    """aiohttp's Server, making GuardedRequestHandler connections."""

    header_seconds = 10.0

    def __call__(self) -> RequestHandler:
        handler = GuardedRequestHandler(self, loop=self._loop, **self._kwargs)
        handler.header_seconds = self.header_seconds
        return handler


class GuardedAppRunner(web.AppRunner):
    def __init__(self, app: web.Application, *, header_seconds: float, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self.header_seconds = header_seconds

    async def _make_server(self) -> Server:
        server = await super()._make_server()
        server.__class__ = GuardedServer  # only which protocol it makes differs
        assert isinstance(server, GuardedServer)
        server.header_seconds = self.header_seconds
        return server


def runner_for(app: web.Application, limits: ReadLimits) -> web.AppRunner:
    return GuardedAppRunner(
        app,
        header_seconds=limits.header_seconds,
        access_log=None,
        keepalive_timeout=75.0,
        lingering_time=LINGER_SECONDS,
        shutdown_timeout=SHUTDOWN_SECONDS,
    )


async def serve(
    app: web.Application,
    host: str,
    port: int,
    *,
    limits: ReadLimits,
    reuse_port: bool = False,
    stop: asyncio.Event | None = None,
) -> None:
    """Until SIGTERM or SIGINT (or ``stop``): then stop accepting, let in-flight requests
    (and their enqueue) finish, and return."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(signum, stop.set)
        except (NotImplementedError, RuntimeError):  # not the main thread (tests)
            pass
    runner = runner_for(app, limits)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port, reuse_port=reuse_port or None).start()
        await stop.wait()
    finally:
        await runner.cleanup()


def run(settings: Settings, host: str, port: int, *, workers: int = 1) -> int:
    settings.check_receiver()
    logs.configure(settings.log_format, settings.log_level)
    if workers > 1:
        return Supervisor(host, port, workers).run()
    loop = new_event_loop()
    try:
        loop.run_until_complete(
            serve(
                create_app(settings),
                host,
                port,
                limits=ReadLimits(),
                reuse_port=os.environ.get(_REUSE_PORT) == "1",
            )
        )
    finally:
        loop.close()
    return 0


def new_event_loop() -> asyncio.AbstractEventLoop:
    """uvloop where it is installed (Linux, macOS): a much cheaper loop per request."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
    return loop


_REUSE_PORT = "PAYHOOKS_REUSE_PORT"
_METRICS_DIR = "PROMETHEUS_MULTIPROC_DIR"


class Supervisor:
    """N receiver processes on one port; SIGTERM is passed on and waited for."""

    def __init__(self, host: str, port: int, workers: int) -> None:
        self.command = [sys.executable, "-m", "payhooks.cli", "serve", "--host", host]
        self.command += ["--port", str(port), "--workers", "1"]
        self.workers = workers
        self.stopping = False

    def run(self) -> int:
        metrics_dir = tempfile.mkdtemp(prefix="payhooks-metrics-")
        env = {**os.environ, _REUSE_PORT: "1", _METRICS_DIR: metrics_dir}
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self._stop)
        children = {slot: self._start(env) for slot in range(self.workers)}
        deaths: list[float] = []
        status = 0
        signalled = False
        try:
            log.info("serve.workers", extra={"workers": self.workers})
            while children:
                time.sleep(0.2)
                for slot, child in list(children.items()):
                    code = child.poll()
                    if code is None:
                        continue
                    del children[slot]
                    if self.stopping:
                        continue
                    log.error("serve.worker_died", extra={"pid": child.pid, "exit_code": code})
                    now = time.monotonic()
                    deaths = [at for at in deaths if now - at < 60] + [now]
                    if len(deaths) >= MAX_DEATHS_PER_MINUTE:
                        status = 1
                        self._stop(signal.SIGTERM, None)
                        continue
                    children[slot] = self._start(env)
                if self.stopping and not signalled:
                    signalled = True
                    for child in children.values():
                        child.send_signal(signal.SIGTERM)
        finally:
            for child in children.values():
                child.kill()
            shutil.rmtree(metrics_dir, ignore_errors=True)
        return status

    def _start(self, env: dict[str, str]) -> subprocess.Popen[bytes]:
        # No threads here, so preexec_fn is safe: a supervisor killed outright (SIGKILL)
        # must not leave its workers serving on.
        return subprocess.Popen(self.command, env=env, preexec_fn=_end_with_parent)  # noqa: PLW1509

    def _stop(self, signum: int, frame: object) -> None:
        self.stopping = True


def _end_with_parent() -> None:
    if sys.platform == "linux":
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


_PR_SET_PDEATHSIG = 1
