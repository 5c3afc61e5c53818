"""Stripe test-mode events (``livemode: false``) move no money: refused unless allowed.

Refused means acknowledged with 200 (Stripe stops retrying), nothing queued, counted on
``payhooks_test_mode_events_total`` and kept in the trail as ignored with the reason.
The event shape is Stripe's Event (stripe/openapi ``openapi/fixtures3.json``, resource
``event``: ``"livemode": false`` is how Stripe marks test-mode data).
"""

from __future__ import annotations

import argparse
import asyncio
import json
from decimal import Decimal
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from pytest_aiohttp import AiohttpClient
from redis import Redis
from rq import Queue
from rq.job import Job

from payhooks.cli.send_test import send_test
from payhooks.providers.stripe import sample as samples
from payhooks.providers.stripe.settings import StripeSettings
from payhooks.settings import Settings
from payhooks.storage.jobs import event_key_of, queued_event
from payhooks.storage.trail import Trail
from service.app import create_app
from tests.support.client import MakeClient, post_webhook
from tests.support.settings import STRIPE_SECRET, with_section


def stripe_test_mode_event(invoice_id: int = 42) -> dict[str, Any]:
    intent = samples.payment_intent(invoice_id=invoice_id, amount=Decimal("100.00"))
    return samples.event("payment_intent.succeeded", intent, livemode=False)


async def post(client: TestClient, event: dict[str, Any]) -> tuple[int, Any]:
    return await post_webhook(client, "stripe", *samples.signed(event, STRIPE_SECRET))


def counted(metrics: str) -> float:
    for line in metrics.splitlines():
        if line.startswith('payhooks_test_mode_events_total{provider="stripe"}'):
            return float(line.split()[-1])
    return 0.0


class TestRefusedByDefault:
    @pytest.fixture
    async def client(self, make_client: MakeClient, settings: Settings) -> TestClient:
        assert settings.provider(StripeSettings).allow_test_mode is False
        return await make_client()

    async def test_acknowledged_not_queued_counted_and_in_the_trail(
        self, client: TestClient, queue: Queue, redis: Redis
    ) -> None:
        before = counted(await (await client.get("/metrics")).text())
        event = stripe_test_mode_event()
        status, answer = await post(client, event)
        assert (status, answer["status"], answer["queued"], answer["ignored"]) == (
            200,
            "ignored",
            0,
            1,
        )
        assert queue.count == 0
        assert counted(await (await client.get("/metrics")).text()) == before + 1
        history = Trail(redis, ttl_seconds=60).history(f"stripe:{event['id']}")
        assert [entry["stage"] for entry in history] == ["received", "ignored"]
        assert "test-mode" in history[-1]["reason"]
        assert "STRIPE_ALLOW_TEST_MODE" in history[-1]["reason"]

    async def test_live_event_is_still_queued(self, client: TestClient, queue: Queue) -> None:
        intent = samples.payment_intent(invoice_id=42, amount=Decimal("100.00"))
        status, answer = await post(
            client, samples.event("payment_intent.succeeded", intent, livemode=True)
        )
        assert (status, answer["queued"]) == (200, 1)
        assert queue.count == 1

    async def test_event_without_livemode_is_not_taken_for_live(
        self, client: TestClient, queue: Queue
    ) -> None:
        event = stripe_test_mode_event()
        del event["livemode"]
        status, answer = await post(client, event)
        assert (status, answer["ignored"]) == (200, 1)
        assert queue.count == 0


async def test_allowed_when_configured(
    aiohttp_client: AiohttpClient, settings: Settings, redis: Redis, queue: Queue
) -> None:
    client = await aiohttp_client(
        create_app(with_section(settings, StripeSettings, allow_test_mode=True))
    )
    status, answer = await post(client, stripe_test_mode_event())
    assert (status, answer["queued"]) == (200, 1)
    assert queue.count == 1


@pytest.mark.parametrize(("value", "allowed"), [(None, False), ("false", False), ("true", True)])
def test_setting_read_from_the_environment(value: str | None, allowed: bool) -> None:
    env = {"REDIS_URL": "redis://localhost:6379/0", "STRIPE_WEBHOOK_SECRETS": "whsec_x"}
    if value is not None:
        env["STRIPE_ALLOW_TEST_MODE"] = value
    assert Settings.from_env(env).provider(StripeSettings).allow_test_mode is allowed


async def test_send_test_event_is_test_mode_and_applied_by_a_dev_receiver(
    aiohttp_client: AiohttpClient,
    settings: Settings,
    redis: Redis,
    queue: Queue,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # `payhooks send-test stripe`, sent to a receiver configured as `payhooks dev` is.
    client = await aiohttp_client(
        create_app(with_section(settings, StripeSettings, allow_test_mode=True))
    )
    args = argparse.Namespace(
        provider="stripe",
        invoice=42,
        amount="100.00",
        currency="EUR",
        method="card",
        source="bank",
        url=str(client.make_url("")).rstrip("/"),
        sandbox_url=None,
        json=True,
    )
    # In a thread: send-test blocks, and this loop must keep serving the receiver.
    assert await asyncio.to_thread(send_test, args, env={}) == 0
    answer = json.loads(capsys.readouterr().out)
    assert (answer["status"], answer["answer"]["queued"]) == (200, 1)
    [job_id] = queue.job_ids
    event_key = event_key_of(Job.fetch(job_id, connection=redis))
    assert event_key is not None
    stored = queued_event(redis, event_key)
    assert stored is not None
    assert stored.details["livemode"] == "false"
