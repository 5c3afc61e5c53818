"""Slow and idle senders, over real sockets on loopback, against the real server stack
(service/server.py: the protocol with the header deadline, the handler with the body
deadline and the memory budget), with short limits so each test takes a second or two."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from decimal import Decimal

import pytest
from redis import Redis
from rq import Queue

from payhooks.devtools.embedded_redis import free_port
from payhooks.providers.stripe import sample as samples
from payhooks.settings import Settings
from payhooks.storage.jobs import event_from_fields
from service.app import create_app
from service.intake import ReadLimits
from service.server import serve
from tests.support.settings import STRIPE_SECRET

LIMITS = ReadLimits(
    header_seconds=1.0, body_seconds=1.0, pending_bytes=256 * 1024, free_bytes=64 * 1024
)


@pytest.fixture
async def port(settings: Settings, redis: Redis) -> AsyncIterator[int]:
    async with serving(settings, LIMITS) as port:
        yield port


@asynccontextmanager
async def serving(settings: Settings, limits: ReadLimits) -> AsyncIterator[int]:
    port = free_port()
    stop = asyncio.Event()
    task = asyncio.create_task(
        serve(create_app(settings, limits=limits), "127.0.0.1", port, limits=limits, stop=stop)
    )
    for _ in range(200):
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            await asyncio.sleep(0.02)
            continue
        writer.close()
        break
    try:
        yield port
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)


def webhook_request(invoice_id: int = 42) -> bytes:
    event = samples.event(
        "payment_intent.succeeded",
        samples.payment_intent(invoice_id=invoice_id, amount=Decimal("100.00")),
    )
    body, headers = samples.signed(json.dumps(event).encode(), STRIPE_SECRET)
    head = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    return (
        f"POST /webhooks/stripe HTTP/1.1\r\nHost: x\r\n{head}Content-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    ).encode() + body


async def status_of(port: int, request: bytes) -> int:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    await writer.drain()
    status_line = await asyncio.wait_for(reader.readline(), 5)
    writer.close()
    return int(status_line.split()[1])


async def dribble(
    port: int, head: bytes, piece: bytes, *, every: float, up_to: float
) -> tuple[bytes, float]:
    """Send ``head``, then ``piece`` every ``every`` seconds until the server answers or
    closes, or ``up_to`` seconds pass. (what the server said, seconds until it did)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    started = time.monotonic()
    writer.write(head)
    answer = asyncio.ensure_future(reader.read(65536))
    try:
        while time.monotonic() - started < up_to:
            done, _ = await asyncio.wait({answer}, timeout=every)
            if done:
                return answer.result(), time.monotonic() - started
            writer.write(piece)
            try:
                await writer.drain()
            except ConnectionError:
                break
        return await asyncio.wait_for(answer, 1), time.monotonic() - started
    finally:
        answer.cancel()
        writer.close()


async def test_slow_body_is_cut_off_while_webhooks_are_answered(port: int, queue: Queue) -> None:
    head = (
        b"POST /webhooks/stripe HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Stripe-Signature: t=1,v1=00\r\nContent-Length: 150000\r\n\r\n"
    )
    slow = asyncio.ensure_future(dribble(port, head, b"x" * 1024, every=0.05, up_to=5))
    await asyncio.sleep(0.3)  # the slow body is well under way
    assert await status_of(port, webhook_request()) == 200
    answer, seconds = await slow
    assert answer.startswith(b"HTTP/1.1 408 ")
    assert b"body_too_slow" in answer
    assert LIMITS.body_seconds <= seconds < LIMITS.body_seconds + 1.5
    assert queue.count == 1  # the valid webhook, and only it


async def test_header_dribbling_is_cut_off(port: int) -> None:
    answer, seconds = await dribble(
        port, b"POST /webhooks/stripe HTTP/1.1\r\n", b"X-A: b\r\n", every=0.1, up_to=5
    )
    assert answer == b""  # closed without a word
    assert LIMITS.header_seconds <= seconds < LIMITS.header_seconds + 1.0


async def test_idle_keep_alive_connection_is_not_cut_by_the_header_deadline(port: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    await asyncio.sleep(LIMITS.header_seconds + 0.5)  # idle, not dribbling
    writer.write(webhook_request())
    status_line = await asyncio.wait_for(reader.readline(), 5)
    writer.close()
    assert status_line.startswith(b"HTTP/1.1 200 ")


async def test_large_bodies_beyond_the_budget_are_refused_before_they_are_read(
    port: int, queue: Queue
) -> None:
    def head(length: int) -> bytes:
        return (
            b"POST /webhooks/stripe HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Stripe-Signature: t=1,v1=00\r\nContent-Length: %d\r\n\r\n" % length
        )

    # Holds 200 KiB - 64 KiB of the 256 KiB budget while it trickles.
    first = asyncio.ensure_future(dribble(port, head(200 * 1024), b"x" * 512, every=0.05, up_to=5))
    await asyncio.sleep(0.2)
    answer, seconds = await dribble(port, head(200 * 1024), b"", every=0.05, up_to=2)
    assert answer.startswith(b"HTTP/1.1 503 ")
    assert seconds < 0.5  # at once: nothing of it was buffered
    assert await status_of(port, webhook_request()) == 200  # small bodies are not held up
    assert (await first)[0].startswith(b"HTTP/1.1 408 ")
    assert queue.count == 1


async def test_protocol_errors_are_warnings_without_request_bytes(
    port: int, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    secret = b"card-number-4242424242424242"
    request = (
        b"POST /webhooks/stripe HTTP/1.1\r\nHost: x\r\nX-Bad\x01Header: " + secret + b"\r\n\r\n"
    )
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    status_line = await asyncio.wait_for(reader.readline(), 5)
    writer.close()
    assert status_line.split()[1] == b"400"
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []
    assert "http.protocol_error" in [r.getMessage() for r in caplog.records]
    for record in caplog.records:
        assert "4242424242424242" not in record.getMessage()
        assert "4242424242424242" not in str(record.__dict__)
        assert record.exc_info is None


async def test_chunked_body_draws_on_the_budget_as_it_arrives(port: int) -> None:
    head = (
        b"POST /webhooks/stripe HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Stripe-Signature: t=1,v1=00\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    chunk = b"4000\r\n" + b"x" * 0x4000 + b"\r\n"  # 16 KiB
    answer, seconds = await dribble(port, head, chunk, every=0.01, up_to=3)
    # 64 KiB free plus the whole 256 KiB budget, then refused, well before the deadline.
    assert answer.startswith(b"HTTP/1.1 503 ")
    assert b"busy" in answer
    assert seconds < LIMITS.body_seconds


async def test_a_slow_body_to_a_token_url_is_logged_without_the_token(
    port: int, caplog: pytest.LogCaptureFixture
) -> None:
    from payhooks.providers.forte import sample as forte

    caplog.set_level(logging.DEBUG)
    head = (
        f"POST /webhooks/forte/{forte.DEV_URL_TOKEN} HTTP/1.1\r\nHost: x\r\n"
        "Content-Type: application/json\r\nContent-Length: 150000\r\n\r\n"
    ).encode()
    answer, _ = await dribble(port, head, b"x" * 1024, every=0.05, up_to=5)
    assert answer.startswith(b"HTTP/1.1 408 ")
    logged = [r.getMessage() + str(r.__dict__) for r in caplog.records]
    assert any("/webhooks/forte/{token}" in line for line in logged)  # the route, named
    assert not any(forte.DEV_URL_TOKEN in line for line in logged)


async def test_a_chunked_body_over_the_limit_that_came_whole_is_413(
    settings: Settings, redis: Redis, queue: Queue
) -> None:
    # No Content-Length to refuse it by, and all of it there before the handler runs (the
    # path that takes a buffered body in one call): still held to the limit.
    event = samples.event(
        "payment_intent.succeeded",
        samples.payment_intent(invoice_id=42, amount=Decimal("100.00")),
    )
    body, headers = samples.signed(json.dumps(event).encode(), STRIPE_SECRET)
    head = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    request = (
        (
            f"POST /webhooks/stripe HTTP/1.1\r\nHost: x\r\n{head}Transfer-Encoding: chunked\r\n"
            f"Connection: close\r\n\r\n{len(body):x}\r\n"
        ).encode()
        + body
        + b"\r\n0\r\n\r\n"
    )
    small = ReadLimits(max_body_bytes=len(body) - 1)
    async with serving(settings, small) as port:
        assert await status_of(port, request) == 413
    assert queue.count == 0
    async with serving(settings, ReadLimits(max_body_bytes=len(body))) as port:
        assert await status_of(port, request) == 200
    assert queue.count == 1


async def test_pipelined_webhooks_each_get_their_own_body(port: int, queue: Queue) -> None:
    """A body that came whole is taken from its request's own buffer (service/intake.py):
    webhooks pipelined on one keep-alive connection, in one write and split across writes,
    with Content-Length or chunked, each verify and queue their own body; a forged one
    between them is refused without touching its neighbours."""

    def pipelined(invoice_id: int, *, chunked: bool = False, forged: bool = False) -> bytes:
        request = webhook_request(invoice_id).replace(b"Connection: close\r\n", b"")
        head, _, body = request.partition(b"\r\n\r\n")
        if forged:
            body = body.replace(b'"%d"' % invoice_id, b'"%d"' % (invoice_id + 50))
        if chunked:
            head = head.replace(b"Content-Length: %d" % len(body), b"Transfer-Encoding: chunked")
            halves = (body[:100], body[100:])
            body = b"".join(b"%x\r\n%s\r\n" % (len(h), h) for h in halves) + b"0\r\n\r\n"
        return head + b"\r\n\r\n" + body

    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        whole = pipelined(42) + pipelined(43, chunked=True) + pipelined(44, forged=True)
        split = pipelined(45) + pipelined(46, chunked=True)
        for part in (whole + split[:60], split[60:300], split[300:]):
            writer.write(part)
            await writer.drain()
        statuses = []
        for _ in range(5):
            statuses.append(int((await asyncio.wait_for(reader.readline(), 5)).split()[1]))
            length = 0
            while (line := await reader.readline()) != b"\r\n":
                if line.lower().startswith(b"content-length:"):
                    length = int(line.partition(b":")[2])
            await reader.readexactly(length)
    finally:
        writer.close()
    assert statuses == [200, 200, 400, 200, 200]
    queued = [event_from_fields(queue.connection.hgetall(job.key)) for job in queue.get_jobs()]
    assert sorted(e.invoice.invoice_id for e in queued if e is not None) == [42, 43, 45, 46]
