"""A small HTTP/1.1 keep-alive load generator: N connections, pre-built requests.

Run in its own process so it does not share a GIL with the server under test. Each
connection sends its next request when the previous answer is complete, and records
the latency. Bounded by request count and time; it targets loopback only.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field


@dataclass
class Result:
    latencies: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)
    #: 200 answers including the warm-up (what the server acknowledged in all).
    acknowledged_total: int = 0
    answered_total: int = 0
    started: float = 0.0
    finished: float = 0.0

    @property
    def seconds(self) -> float:
        return self.finished - self.started


class _Connection(asyncio.Protocol):
    """One connection; a server that closes it (gunicorn's sync workers do, after every
    answer) gets a new one, as wrk does, so every stack sees the same offered load."""

    def __init__(self, runner: _Runner) -> None:
        self._runner = runner
        self._buffer = bytearray()
        self._sent_at = 0.0
        self._waiting = False
        self.transport: asyncio.Transport | None = None
        self.closed = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self._send()

    def _send(self) -> None:
        request = self._runner.next_request()
        if request is None or self.transport is None:
            if self.transport is not None:
                self.transport.close()
            return
        self._sent_at = time.perf_counter()
        self._waiting = True
        self.transport.write(request)

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        while True:
            end = self._buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self._buffer[:end]).lower()
            length = 0
            start = head.find(b"content-length:")
            if start >= 0:
                length = int(
                    head[
                        start + 15 : head.find(b"\r\n", start)
                        if head.find(b"\r\n", start) > 0
                        else None
                    ]
                )
            total = end + 4 + length
            if len(self._buffer) < total:
                return
            status = int(head[9:12])
            closing = b"connection: close" in head
            del self._buffer[:total]
            self._waiting = False
            self._runner.record(status, time.perf_counter() - self._sent_at)
            if closing:
                return  # the server closes; connection_lost opens the next one
            self._send()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._waiting:
            self._runner.record(0, time.perf_counter() - self._sent_at)
        if not self.closed.done():
            self.closed.set_result(None)


class _Runner:
    def __init__(self, requests: list[bytes], deadline: float, warmup: float) -> None:
        self._requests = requests
        self._index = 0
        self._deadline = deadline
        self._warm_until = warmup
        self.result = Result()

    def next_request(self) -> bytes | None:
        now = time.perf_counter()
        if self._index >= len(self._requests) or now >= self._deadline:
            return None
        request = self._requests[self._index]
        self._index += 1
        return request

    def active(self) -> bool:
        return self._index < len(self._requests) and time.perf_counter() < self._deadline

    def record(self, status: int, latency: float) -> None:
        self.result.answered_total += 1
        if status == 200:
            self.result.acknowledged_total += 1
        now = time.perf_counter()
        if now < self._warm_until:
            return
        if not self.result.started:
            self.result.started = now
        self.result.finished = now
        self.result.latencies.append(latency)
        self.result.statuses[status] = self.result.statuses.get(status, 0) + 1


async def run(
    host: str,
    port: int,
    requests: list[bytes],
    *,
    connections: int,
    seconds: float,
    warmup: float = 1.0,
) -> Result:
    loop = asyncio.get_running_loop()
    start = time.perf_counter()
    runner = _Runner(requests, start + warmup + seconds, start + warmup)

    async def slot() -> None:
        while runner.active():
            try:
                _, protocol = await loop.create_connection(lambda: _Connection(runner), host, port)
            except OSError:
                runner.record(0, 0.0)
                await asyncio.sleep(0.01)
                continue
            await protocol.closed

    await asyncio.gather(*(slot() for _ in range(connections)))
    return runner.result


def build_request(host: str, port: int, path: str, body: bytes, headers: dict[str, str]) -> bytes:
    lines = [f"POST {path} HTTP/1.1", f"Host: {host}:{port}", f"Content-Length: {len(body)}"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body
