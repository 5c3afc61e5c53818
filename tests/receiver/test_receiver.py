"""POST /webhooks/stripe against a real Redis: what is acknowledged is queued, once."""

from __future__ import annotations

import asyncio
import io
import json
import time
import zlib
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from pytest_aiohttp import AiohttpClient
from redis import Redis
from redis.asyncio import Redis as AsyncRedis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from rq import Queue
from rq.job import Job

from payhooks.devtools.embedded_redis import EmbeddedRedis, free_port
from payhooks.providers.stripe import sample as samples
from payhooks.providers.stripe.sample import paid_event
from payhooks.settings import Settings
from payhooks.storage import redis_keys
from payhooks.storage.jobs import event_key_of, queued_event
from payhooks.storage.trail import Trail
from service.app import create_app
from tests.support.client import post_webhook
from tests.support.settings import OLD_STRIPE_SECRET, STRIPE_SECRET, with_settings


class TestAccepted:
    async def test_signed_event_becomes_one_rq_job(self, client: TestClient, queue: Queue) -> None:
        event = paid_event()
        status, answer = await post_webhook(client, "stripe", *samples.signed(event, STRIPE_SECRET))
        assert (status, answer["status"], answer["queued"]) == (200, "accepted", 1)

        assert queue.count == 1
        job = Job.fetch(queue.job_ids[0], connection=queue.connection)
        assert job.func_name == "workers.jobs.apply_payment_event"
        assert event_key_of(job) == f"stripe:{event['id']}"
        assert job.get_status() == "queued"
        assert job.failure_ttl == 14 * 86400
        stored = queued_event(queue.connection, f"stripe:{event['id']}")
        assert stored is not None
        assert stored.token == event["data"]["object"]["id"]
        # The job is the event's one record: no copy beside it.
        assert not queue.connection.exists(redis_keys.event(f"stripe:{event['id']}"))

    async def test_previous_secret_still_accepted_during_a_roll(
        self, client: TestClient, queue: Queue
    ) -> None:
        status, _ = await post_webhook(
            client, "stripe", *samples.signed(paid_event(), OLD_STRIPE_SECRET)
        )
        assert status == 200
        assert queue.count == 1

    async def test_same_event_delivered_twice_is_one_job(
        self, client: TestClient, queue: Queue
    ) -> None:
        event = paid_event()
        first = await post_webhook(client, "stripe", *samples.signed(event, STRIPE_SECRET))
        second = await post_webhook(client, "stripe", *samples.signed(event, STRIPE_SECRET))
        assert first[1]["status"] == "accepted"
        assert second == (200, {"status": "duplicate", "queued": 0, "duplicates": 1, "ignored": 0})
        assert queue.count == 1
        # The trail says which delivery each entry was, and keeps the duplicate's body too.
        trail = Trail(queue.connection, ttl_seconds=60)
        entries = trail.history(f"stripe:{event['id']}")
        assert [e["stage"] for e in entries] == ["received", "enqueued", "duplicate"]
        assert trail.webhook(str(entries[-1]["webhook"])) is not None

    async def test_unhandled_event_type_is_acknowledged_without_a_job(
        self, client: TestClient, queue: Queue
    ) -> None:
        # The counters are the process's: other tests may have counted Stripe events before.
        ignored = 'payhooks_events_total{outcome="ignored",provider="stripe"}'
        before = counted(await (await client.get("/metrics")).text(), ignored)
        event = samples.event("customer.updated", {"id": "cus_1", "object": "customer"})
        status, answer = await post_webhook(client, "stripe", *samples.signed(event, STRIPE_SECRET))
        assert (status, answer["status"], answer["ignored"]) == (200, "ignored", 1)
        assert queue.count == 0
        metrics = await (await client.get("/metrics")).text()
        assert counted(metrics, ignored) == before + 1


def counted(metrics: str, sample: str) -> float:
    """A sample's value in the Prometheus text (0 before it is first counted)."""
    for line in metrics.splitlines():
        if line.startswith(f"{sample} "):
            return float(line.split()[-1])
    return 0.0


class TestRejected:
    @pytest.mark.parametrize(
        ("make_headers", "reason"),
        [
            (lambda body: {"Content-Type": "application/json"}, "missing Stripe-Signature header"),
            (
                lambda body: samples.signed(body, "whsec_some_other_secret")[1],
                "signature does not match",
            ),
            (
                lambda body: samples.signed(body, STRIPE_SECRET, timestamp=int(time.time()) - 301)[
                    1
                ],
                "timestamp outside the tolerance window",
            ),
            (
                lambda body: {"Stripe-Signature": "garbage", "Content-Type": "application/json"},
                "malformed Stripe-Signature header",
            ),
        ],
    )
    async def test_bad_signature_is_400_and_queues_nothing(
        self, client: TestClient, queue: Queue, make_headers: Any, reason: str
    ) -> None:
        body = json.dumps(paid_event()).encode()
        status, answer = await post_webhook(client, "stripe", body, make_headers(body))
        assert (status, answer["reason"]) == (400, reason)
        assert queue.count == 0
        assert queue.connection.keys("payhooks:event:*") == []

    async def test_tampered_body_fails_verification(self, client: TestClient, queue: Queue) -> None:
        body, headers = samples.signed(paid_event(), STRIPE_SECRET)
        status, answer = await post_webhook(client, "stripe", body.replace(b"100", b"999"), headers)
        assert (status, answer["error"]) == (400, "invalid_signature")
        assert queue.count == 0

    async def test_wrong_content_type_is_415(self, client: TestClient, queue: Queue) -> None:
        body, headers = samples.signed(paid_event(), STRIPE_SECRET)
        headers["Content-Type"] = "application/x-www-form-urlencoded"
        status, answer = await post_webhook(client, "stripe", body, headers)
        assert (status, answer["error"]) == (415, "unsupported_media_type")
        assert queue.count == 0

    async def test_body_over_one_mebibyte_is_413(self, client: TestClient, queue: Queue) -> None:
        event = paid_event()
        event["data"]["object"]["description"] = "x" * (1024 * 1024)
        response = await client.post(
            "/webhooks/stripe",
            data=io.BytesIO(json.dumps(event).encode()),
            headers=samples.signed(event, STRIPE_SECRET)[1],
        )
        assert response.status == 413
        assert queue.count == 0

    async def test_signed_body_that_is_not_json_is_kept_and_acknowledged(
        self, client: TestClient, queue: Queue
    ) -> None:
        # Stripe would retry a 4xx for days, then disable the endpoint; a person replays it
        # once the cause is known (`payhooks unprocessed`, tests/test_hostile_input.py).
        status, answer = await post_webhook(
            client, "stripe", *samples.signed(b'{"id": "evt_1", "type": ', STRIPE_SECRET)
        )
        assert (status, answer["status"]) == (200, "unprocessed")
        assert queue.count == 0
        assert queue.connection.zcard("payhooks:unprocessed") == 1

    async def test_only_post_is_allowed(self, client: TestClient) -> None:
        response = await client.get("/webhooks/stripe")
        assert response.status == 405


async def test_redis_down_is_503_so_stripe_retries(
    aiohttp_client: AiohttpClient, settings: Settings
) -> None:
    down = with_settings(settings, redis_url=f"redis://127.0.0.1:{free_port()}/0")
    client = await aiohttp_client(create_app(down))
    status, answer = await post_webhook(
        client, "stripe", *samples.signed(paid_event(), STRIPE_SECRET)
    )
    assert (status, answer["error"]) == (503, "queue_unavailable")
    assert (await client.get("/readyz")).status == 503
    assert (await client.get("/healthz")).status == 200


class TricklingRedis:
    """A proxy in front of the real Redis that, once armed, hands back the replies one line
    every ``gap`` seconds: a Redis that answers, but slowly."""

    def __init__(self, port: int, gap: float) -> None:
        self.port, self.gap, self.armed = port, gap, False
        self.server: asyncio.Server | None = None

    async def __aenter__(self) -> int:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return int(self.server.sockets[0].getsockname()[1])

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()

    async def _serve(
        self, client_in: asyncio.StreamReader, client_out: asyncio.StreamWriter
    ) -> None:
        redis_in, redis_out = await asyncio.open_connection("127.0.0.1", self.port)

        async def requests() -> None:
            while data := await client_in.read(65536):
                redis_out.write(data)

        async def replies() -> None:
            while line := await redis_in.readline():
                if self.armed:
                    await asyncio.sleep(self.gap)
                client_out.write(line)

        try:
            await asyncio.gather(requests(), replies())
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            client_out.close()
            redis_out.close()


async def test_a_webhook_waits_for_redis_no_longer_than_the_read_timeout_in_all(
    aiohttp_client: AiohttpClient, settings: Settings, redis_server: EmbeddedRedis
) -> None:
    """The read timeout bounds all of a webhook's replies together, not each one: a Redis
    that answers each reply just within it cannot hold the webhook for several."""
    proxy = TricklingRedis(redis_server.port, gap=0.4)
    async with proxy as port:
        slow = AsyncRedis(port=port, socket_timeout=1.0, retry=Retry(NoBackoff(), 0))
        client = await aiohttp_client(create_app(settings, redis=slow))
        proxy.armed = True
        # An ignored event: four replies (its webhook kept, the trail's entries), 1.6 s in all.
        event = samples.event("customer.updated", {"id": "cus_1", "object": "customer"})
        started = time.monotonic()
        status, answer = await post_webhook(client, "stripe", *samples.signed(event, STRIPE_SECRET))
        assert (status, answer["error"]) == (503, "queue_unavailable")
        assert time.monotonic() - started < 1.5


async def test_errors_never_echo_the_secret(client: TestClient) -> None:
    body = json.dumps(paid_event()).encode()
    for headers in (samples.signed(body, "whsec_wrong")[1], {"Content-Type": "application/json"}):
        response = await client.post("/webhooks/stripe", data=body, headers=headers)
        text = await response.text()
        assert STRIPE_SECRET not in text
        assert "whsec" not in text


async def test_queued_job_is_the_job_rq_itself_would_write(
    client: TestClient, queue: Queue, settings: Settings
) -> None:
    from payhooks.storage.jobs import JobFactory

    event = paid_event()
    await post_webhook(client, "stripe", *samples.signed(event, STRIPE_SECRET))
    key = f"stripe:{event['id']}"
    written = {
        k.decode(): v
        for k, v in queue.connection.hgetall(f"rq:job:{redis_keys.job_id(key)}").items()
    }
    expected = JobFactory(settings).full_mapping(
        key, f"stripe payment_intent.succeeded {event['id']}"
    )
    # Beside RQ's fields, the event's own (payhooks/storage/jobs.py); of RQ's, those it
    # writes empty are left out (each field costs Redis CPU per event): RQ reads an absent
    # field as it reads an empty one, so the job it fetches is the job it would write.
    events = {"event", "e", *(n for n in written if n.startswith("e."))}
    assert set(written) - events == {name for name, value in expected.items() if value != ""}
    fetched = Job.fetch(redis_keys.job_id(key), connection=queue.connection)
    # RQ compresses data; we write it as it is, which RQ reads the same (smaller, cheaper).
    assert fetched.data == zlib.decompress(expected.pop("data"))
    restored = fetched.to_dict()
    for name, value in expected.items():
        if name in ("created_at", "enqueued_at"):
            continue
        assert restored[name] == value, name
        if value == "":
            continue
        raw = (
            value
            if isinstance(value, bytes)
            else str(value.value if hasattr(value, "value") else value).encode()
        )
        assert written[name] == raw, name


def test_bank_and_billing_details_are_redacted() -> None:
    from payhooks.providers.kit.receiving import redact_json

    body = json.dumps(
        {
            "data": {
                "object": {
                    "payment_method_details": {
                        "type": "ideal",
                        "ideal": {
                            "bank": "ing",
                            "bic": "INGBNL2A",
                            "iban_last4": "5678",
                            "verified_name": "J. Doe",
                        },
                    },
                    "billing_details": {"name": "J. Doe", "email": "j@example.com"},
                    "sepa": {"bank_code": "37040044", "branch_code": "532", "last4": "3000"},
                }
            }
        }
    ).encode()
    redacted = redact_json(body)
    assert redacted is not None
    for value in (b"INGBNL2A", b"5678", b"J. Doe", b"j@example.com", b"37040044", b"3000"):
        assert value not in redacted
    assert b'"bank": "ing"' in redacted


async def test_metrics_say_whether_redis_answers(
    aiohttp_client: AiohttpClient, settings: Settings, redis: Redis
) -> None:
    client = await aiohttp_client(create_app(settings))
    assert "payhooks_redis_up 1.0" in await (await client.get("/metrics")).text()
    down = await aiohttp_client(
        create_app(with_settings(settings, redis_url=f"redis://127.0.0.1:{free_port()}/0"))
    )
    assert "payhooks_redis_up 0.0" in await (await down.get("/metrics")).text()


@pytest.mark.slow
def test_serve_with_two_workers_answers_from_both_processes(
    settings: Settings, redis: Redis, queue: Queue
) -> None:
    """`payhooks serve --workers 2`: two processes on one port (SO_REUSEPORT), both
    answering, their counters summed in /metrics, a dead one replaced, all stopped by one
    SIGTERM."""
    import os
    import signal
    import subprocess
    from pathlib import Path

    import httpx

    from tests.support.processes import PAYHOOKS, worker_env

    port = free_port()
    supervisor = subprocess.Popen(
        [*PAYHOOKS, "serve", "--host", "127.0.0.1", "--port", str(port), "--workers", "2"],
        env={**worker_env(settings), "LOG_LEVEL": "WARNING"},
    )

    def children() -> list[int]:
        tasks = Path(f"/proc/{supervisor.pid}/task")
        return [int(c) for t in tasks.iterdir() for c in (t / "children").read_text().split()]

    def cpu_ticks(pid: int) -> int:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])

    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{url}/healthz").status_code == 200 and len(children()) == 2:
                    break
            except httpx.HTTPError:
                time.sleep(0.05)
        pids = children()
        assert len(pids) == 2
        before = {pid: cpu_ticks(pid) for pid in pids}
        sent = 150
        # A new connection per request: the kernel spreads connections, not requests.
        with httpx.Client(limits=httpx.Limits(max_keepalive_connections=0)) as client:
            for n in range(sent):
                body, headers = samples.signed(paid_event(1000 + n), STRIPE_SECRET)
                response = client.post(f"{url}/webhooks/stripe", content=body, headers=headers)
                assert response.status_code == 200
            exposed = client.get(f"{url}/metrics").text
        assert queue.count == sent
        assert (
            f'payhooks_webhooks_total{{outcome="accepted",provider="stripe"}} {sent}.0' in exposed
        )
        for pid in pids:
            assert cpu_ticks(pid) - before[pid] >= 3, "one process did all the work"

        # A process that dies is replaced; the port keeps answering.
        os.kill(pids[0], signal.SIGKILL)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and (len(children()) != 2 or pids[0] in children()):
            time.sleep(0.05)
        replaced = children()
        assert len(replaced) == 2
        assert pids[0] not in replaced
        body, headers = samples.signed(paid_event(999), STRIPE_SECRET)
        assert httpx.post(f"{url}/webhooks/stripe", content=body, headers=headers).is_success

        supervisor.send_signal(signal.SIGTERM)
        assert supervisor.wait(timeout=20) == 0
        assert not any(Path(f"/proc/{pid}").exists() for pid in replaced)
    finally:
        if supervisor.poll() is None:
            os.kill(supervisor.pid, signal.SIGKILL)
            supervisor.wait()


@pytest.mark.slow
def test_serve_workers_that_keep_dying_stop_the_supervisor(settings: Settings) -> None:
    """A port another program holds: the workers die on start; rather than restart them
    forever, the supervisor stops with exit 1 for whatever runs it to report."""
    import socket
    import subprocess

    from tests.support.processes import PAYHOOKS, worker_env

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        supervisor = subprocess.run(
            [*PAYHOOKS, "serve", "--host", "127.0.0.1", "--port", str(port), "--workers", "2"],
            env=worker_env(settings),
            capture_output=True,
            timeout=60,
            check=False,
        )
    assert supervisor.returncode == 1
    assert supervisor.stderr.count(b"serve.worker_died") >= 3
