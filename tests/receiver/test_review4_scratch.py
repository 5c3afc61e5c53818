from __future__ import annotations

import asyncio
import json
from decimal import Decimal

from redis import Redis
from rq import Queue

from payhooks.providers.stripe import sample as samples
from payhooks.settings import Settings
from payhooks.storage.jobs import event_from_fields
from service.intake import ReadLimits
from tests.receiver.test_slow_senders import serving
from tests.support.settings import STRIPE_SECRET


def req(
    invoice: int, *, chunked: bool = False, close: bool = False, chunk: int = 0
) -> tuple[bytes, bytes]:
    event = samples.event(
        "payment_intent.succeeded",
        samples.payment_intent(invoice_id=invoice, amount=Decimal(f"{invoice}.00")),
    )
    body, headers = samples.signed(json.dumps(event).encode(), STRIPE_SECRET)
    head = "".join(f"{n}: {v}\r\n" for n, v in headers.items())
    conn = "Connection: close\r\n" if close else ""
    if chunked:
        size = chunk or len(body)
        parts = [body[i : i + size] for i in range(0, len(body), size)]
        payload = b"".join(f"{len(p):x}\r\n".encode() + p + b"\r\n" for p in parts) + b"0\r\n\r\n"
        return (
            f"POST /webhooks/stripe HTTP/1.1\r\nHost: x\r\n{head}Transfer-Encoding: chunked\r\n{conn}\r\n"
        ).encode(), payload
    return (
        f"POST /webhooks/stripe HTTP/1.1\r\nHost: x\r\n{head}Content-Length: {len(body)}\r\n{conn}\r\n"
    ).encode(), body


async def read_responses(reader: asyncio.StreamReader, n: int) -> list[tuple[int, bytes]]:
    out = []
    for _ in range(n):
        status = await asyncio.wait_for(reader.readline(), 10)
        length = 0
        while (line := await reader.readline()) not in (b"\r\n", b""):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":")[1])
        out.append((int(status.split()[1]), await reader.readexactly(length)))
    return out


def invoices(queue: Queue, redis: Redis) -> list[tuple[int | None, Decimal | None]]:
    found = []
    for job in queue.get_jobs():
        ev = event_from_fields(redis.hgetall(job.key))
        assert ev is not None
        found.append((ev.invoice.invoice_id, ev.amount))
    return sorted(found)


async def test_pipelined_mixed(settings: Settings, redis: Redis, queue: Queue) -> None:
    async with serving(settings, ReadLimits(body_seconds=2.0)) as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        a = b"".join(req(42))
        b = b"".join(req(43, chunked=True, chunk=100))
        bad_h, bad_b = req(44)
        bad = bad_h + bad_b.replace(b"44.00", b"45.00").replace(b"4400", b"4500")
        c = b"".join(req(45, chunked=True))
        d_h, d_b = req(46)
        e = b"".join(req(47, close=True))
        # All in one write; then one split across writes.
        writer.write(a + b + bad + c + d_h + d_b[:50])
        await writer.drain()
        await asyncio.sleep(0.2)
        writer.write(d_b[50:] + e[:10])
        await writer.drain()
        await asyncio.sleep(0.2)
        writer.write(e[10:])
        await writer.drain()
        got = await read_responses(reader, 6)
        print(got)
        writer.close()
    print(invoices(queue, redis))
    assert [s for s, _ in got] == [200, 200, 400, 200, 200, 200]
    assert invoices(queue, redis) == [(i, Decimal(f"{i}.00")) for i in (42, 43, 45, 46, 47)]


async def test_pipelined_over_limit(settings: Settings, redis: Redis, queue: Queue) -> None:
    h, body = req(42, chunked=True, chunk=200)
    limit = len(b"".join(req(42)[1:])) - 1
    async with serving(settings, ReadLimits(max_body_bytes=limit)) as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(h + body + b"".join(req(43, close=True)))
        await writer.drain()
        got = await read_responses(reader, 2)
        print(got)
        writer.close()
    print(invoices(queue, redis))
    assert got[0][0] == 413


async def test_gzip(settings: Settings, redis: Redis, queue: Queue) -> None:
    import gzip

    h, body = req(42)
    z = gzip.compress(body)
    head = h.replace(
        f"Content-Length: {len(body)}".encode(),
        f"Content-Length: {len(z)}\r\nContent-Encoding: gzip".encode(),
    )
    padded = body[:-1] + b" " * (3 * 1024 * 1024) + body[-1:]
    bomb = gzip.compress(padded)
    head2 = h.replace(
        f"Content-Length: {len(body)}".encode(),
        f"Content-Length: {len(bomb)}\r\nContent-Encoding: gzip".encode(),
    )
    async with serving(settings, ReadLimits()) as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(head + z + head2 + bomb)
        await writer.drain()
        got = await read_responses(reader, 2)
        print([(s, b[:80]) for s, b in got], len(bomb))
        writer.close()
    print(invoices(queue, redis))
