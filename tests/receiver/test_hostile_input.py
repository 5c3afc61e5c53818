"""Signed but malformed bodies: kept, acknowledged 2xx, counted, listed, replayable.

A provider answered 4xx or 5xx for a genuine notification retries it for days and then
disables the endpoint; no retry makes our code read it better. Unverified junk stays 4xx.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
from decimal import Decimal
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from pytest_aiohttp import AiohttpClient
from redis import Redis
from rq import Queue

from payhooks.cli.main import main as cli_main
from payhooks.cli.ops import Ops
from payhooks.cli.unprocessed import UnprocessedWebhooks
from payhooks.devtools.sandbox.nexudus import SandboxState
from payhooks.devtools.sandbox.server import ThreadedServer
from payhooks.providers.braintree import sample as braintree_samples
from payhooks.providers.epay import sample as epay_samples
from payhooks.providers.generic import sample as generic_samples
from payhooks.providers.liqpay import sample as liqpay_samples
from payhooks.providers.paypal import sample as paypal_samples
from payhooks.providers.paypal.stand_in import CERT_PATH, PayPalState
from payhooks.providers.stripe import sample as stripe_samples
from payhooks.settings import Settings
from payhooks.storage import redis_keys
from payhooks.storage.trail import origin_digest
from service.app import create_app
from tests.support.client import post_webhook
from tests.support.delivery import keep_unprocessed
from tests.support.settings import (
    BRAINTREE_PRIVATE,
    BRAINTREE_PUBLIC,
    EPAY_SECRET,
    GENERIC_SECRET,
    GOCARDLESS_SECRET,
    LIQPAY_KEY,
    PAYPAL_WEBHOOK_ID,
    STRIPE_SECRET,
    with_settings,
)

#: Deeper than any JSON parser's recursion limit (orjson: 1024, json: the stack).
DEEP = 100_000


async def unprocessed_count(client: TestClient, provider: str) -> float:
    text = await (await client.get("/metrics")).text()
    found = re.search(
        rf'^payhooks_webhooks_total{{outcome="unprocessed",provider="{provider}"}} (\S+)$',
        text,
        re.MULTILINE,
    )
    return float(found.group(1)) if found else 0.0


async def assert_not_lost(
    client: TestClient,
    settings: Settings,
    redis: Redis,
    queue: Queue,
    provider: str,
    request: tuple[str, bytes, dict[str, str]],
) -> str:
    """Answered 2xx and the body stored. Either the provider's normaliser read it (its
    events queued or ignored) or it is unprocessed: listed with a reason and counted.
    Returns which."""
    before = await unprocessed_count(client, provider)
    path, body, headers = request
    if path.startswith("GET "):
        response = await client.get(path.removeprefix("GET "))
    else:
        response = await client.post(path, data=body, headers=headers)
    assert response.status == 200, await response.text()
    outcome = str((await response.json())["status"])
    stored = Ops(settings, redis).trail.webhook(redis_keys.webhook(origin_digest(body)))
    assert stored is not None
    assert stored["body"] == body or stored["redacted"]
    listed = UnprocessedWebhooks(Ops(settings, redis)).listed()
    if outcome == "unprocessed":
        assert queue.count == 0
        assert [w.provider for w in listed] == [provider]
        assert listed[0].reason  # why, for whoever fixes it
        assert await unprocessed_count(client, provider) == before + 1
        exposed = await (await client.get("/metrics")).text()
        assert "\npayhooks_unprocessed_webhooks 1.0\n" in exposed  # what the alert watches
    else:
        assert outcome in ("accepted", "ignored")
        assert listed == []
    return outcome


def stripe_request(event: dict[str, Any] | bytes) -> tuple[str, bytes, dict[str, str]]:
    return ("/webhooks/stripe", *stripe_samples.signed(event, STRIPE_SECRET))


def braintree_request(xml: str) -> tuple[str, bytes, dict[str, str]]:
    return (
        "/webhooks/braintree",
        *braintree_samples.signed(xml, BRAINTREE_PUBLIC, BRAINTREE_PRIVATE),
    )


def liqpay_request(data: bytes) -> tuple[str, bytes, dict[str, str]]:
    encoded = base64.b64encode(data).decode()
    signature = liqpay_samples.signature_of(LIQPAY_KEY, encoded)
    from urllib.parse import urlencode

    body = urlencode({"data": encoded, "signature": signature}).encode()
    return "/webhooks/liqpay", body, {"Content-Type": "application/x-www-form-urlencoded"}


def deeply_nested(key: str) -> bytes:
    return f'{{"{key}": {"[" * DEEP}{"]" * DEEP}}}'.encode()


class TestSignedButMalformedIsKept:
    async def test_stripe_created_far_beyond_any_date(
        self, client: TestClient, settings: Settings, redis: Redis, queue: Queue
    ) -> None:
        event = stripe_samples.event(
            "payment_intent.succeeded",
            stripe_samples.payment_intent(invoice_id=42, amount=Decimal(100)),
        )
        raw = json.dumps(event).replace(f'"created": {event["created"]}', '"created": 1e308')
        assert "1e308" in raw
        await assert_not_lost(
            client, settings, redis, queue, "stripe", stripe_request(raw.encode())
        )

    async def test_paypal_amount_that_is_not_an_object(
        self,
        client: TestClient,
        settings: Settings,
        redis: Redis,
        queue: Queue,
        sandbox: ThreadedServer,
        paypal_state: PayPalState,
    ) -> None:
        event = paypal_samples.capture_event(invoice_id="42", amount=Decimal(100))
        event["resource"]["amount"] = "100.00"
        body = paypal_samples.encoded(event)
        headers = paypal_samples.headers_for(
            body, PAYPAL_WEBHOOK_ID, sandbox.url + CERT_PATH, paypal_state.sign
        )
        await assert_not_lost(
            client, settings, redis, queue, "paypal", ("/webhooks/paypal", body, headers)
        )

    async def test_braintree_amount_that_is_not_a_number(
        self, client: TestClient, settings: Settings, redis: Redis, queue: Queue
    ) -> None:
        xml = braintree_samples.transaction_notification(
            "transaction_settled", order_id="42", amount=Decimal(100)
        ).replace("<amount>100</amount>", "<amount>ten euros</amount>")
        assert "ten euros" in xml
        await assert_not_lost(client, settings, redis, queue, "braintree", braintree_request(xml))

    async def test_braintree_payload_that_is_not_xml(
        self, client: TestClient, settings: Settings, redis: Redis, queue: Queue
    ) -> None:
        outcome = await assert_not_lost(
            client, settings, redis, queue, "braintree", braintree_request('{"kind": "json?"}')
        )
        assert outcome == "unprocessed"

    async def test_liqpay_end_date_beyond_any_date(
        self, client: TestClient, settings: Settings, redis: Redis, queue: Queue
    ) -> None:
        payment = liqpay_samples.payment(order_id="42", amount=Decimal(100))
        raw = json.dumps(payment).replace(f'"end_date": {payment["end_date"]}', '"end_date": 1e11')
        assert "1e11" in raw
        await assert_not_lost(
            client, settings, redis, queue, "liqpay", liqpay_request(raw.encode())
        )

    async def test_liqpay_deeply_nested_data(
        self, client: TestClient, settings: Settings, redis: Redis, queue: Queue
    ) -> None:
        outcome = await assert_not_lost(
            client, settings, redis, queue, "liqpay", liqpay_request(deeply_nested("order_id"))
        )
        assert outcome == "unprocessed"

    async def test_gocardless_deeply_nested_json(
        self, client: TestClient, settings: Settings, redis: Redis, queue: Queue
    ) -> None:
        body = deeply_nested("events")
        signature = hmac.new(GOCARDLESS_SECRET.encode(), body, hashlib.sha256).hexdigest()
        headers = {"Webhook-Signature": signature, "Content-Type": "application/json"}
        outcome = await assert_not_lost(
            client, settings, redis, queue, "gocardless", ("/webhooks/gocardless", body, headers)
        )
        assert outcome == "unprocessed"

    async def test_epay_amount_that_is_a_superscript_digit(
        self, client: TestClient, settings: Settings, redis: Redis, queue: Queue
    ) -> None:
        parameters = [
            ("amount", "²") if name == "amount" else (name, value)
            for name, value in epay_samples.callback(orderid="42", amount_minor=10000)
        ]
        query = epay_samples.signed_query(parameters, EPAY_SECRET)
        await assert_not_lost(
            client,
            settings,
            redis,
            queue,
            "epay",
            (f"GET /webhooks/epay?{query}", query.encode(), {}),
        )


class TestMoneyOfTheWrongTypeIsNeverIgnored:
    """A paid event whose amount or currency has the wrong type is not "no money
    received": ignoring it would drop a payment without a trace (found by a README trial)."""

    @pytest.mark.parametrize(
        ("field", "value"),
        [("amount_received", "lots"), ("amount_received", 99.5), ("currency", 978)],
    )
    async def test_stripe(
        self,
        client: TestClient,
        settings: Settings,
        redis: Redis,
        queue: Queue,
        field: str,
        value: object,
    ) -> None:
        intent = stripe_samples.payment_intent(invoice_id=42, amount=Decimal(100))
        intent[field] = value
        event = stripe_samples.event("payment_intent.succeeded", intent)
        outcome = await assert_not_lost(
            client, settings, redis, queue, "stripe", stripe_request(event)
        )
        assert outcome == "unprocessed"

    @pytest.mark.parametrize(("field", "value"), [("amount", "100.00"), ("currency", 978)])
    async def test_liqpay(
        self,
        client: TestClient,
        settings: Settings,
        redis: Redis,
        queue: Queue,
        field: str,
        value: object,
    ) -> None:
        payment = liqpay_samples.payment(order_id="42", amount=Decimal(100))
        payment[field] = value
        outcome = await assert_not_lost(
            client, settings, redis, queue, "liqpay", liqpay_request(json.dumps(payment).encode())
        )
        assert outcome == "unprocessed"


class TestGenericSchemaIsStrict:
    """The operator's own system reads the 422's complaints, fixes and resends."""

    @pytest.mark.parametrize(
        ("change", "complaint"),
        [
            ({"currency": "EUR\n"}, "currency"),  # a `$` pattern would let the newline through
            ({"amount": "100.00\n"}, "amount"),
            ({"invoice_id": 197.0}, "invoice_id"),
            ({"provider": 96.0}, "provider"),
            ({"paid_at": "2026-02-30T09:30:00Z"}, "paid_at"),
            ({"paid_at": "2026-02-28T24:30:00Z"}, "paid_at"),
        ],
    )
    async def test_refused_with_the_field_named(
        self, client: TestClient, queue: Queue, change: dict[str, Any], complaint: str
    ) -> None:
        notification = generic_samples.notification(invoice_id=197, amount="100.00")
        raw = json.dumps({**notification, **change}).encode()
        body, headers = generic_samples.signed(raw, GENERIC_SECRET)
        status, answer = await post_webhook(client, "generic/bank", body, headers)
        assert (status, answer["error"]) == (422, "invalid_payload")
        assert [e.split(":")[0] for e in answer["errors"]] == [complaint]
        assert queue.count == 0


class TestBraintreeChallenge:
    @pytest.mark.parametrize(
        "challenge",
        ["xyz", "ABCDEF0123456789ABCD", "abcdef0123456789abc", "a" * 33, "abcdef0123456789abcd%0A"],
    )
    async def test_anything_but_20_to_32_lower_case_hex_is_400(
        self, client: TestClient, challenge: str
    ) -> None:
        response = await client.get(f"/webhooks/braintree?bt_challenge={challenge}")
        assert response.status == 400
        assert (await response.json())["error"] == "malformed_payload"

    async def test_a_hex_challenge_is_answered(self, client: TestClient) -> None:
        response = await client.get("/webhooks/braintree?bt_challenge=abcdef0123456789abcd")
        assert response.status == 200
        assert (await response.text()).startswith(f"{BRAINTREE_PUBLIC}|")


async def test_unverified_junk_is_still_refused_and_not_kept(
    client: TestClient, settings: Settings, redis: Redis
) -> None:
    body = deeply_nested("events")
    headers = {"Webhook-Signature": "0" * 64, "Content-Type": "application/json"}
    status, _ = await post_webhook(client, "gocardless", body, headers)
    assert status == 498
    assert UnprocessedWebhooks(Ops(settings, redis)).listed() == []


class TestUnprocessedCommand:
    async def test_replay_queues_what_the_current_code_reads_and_pays_the_invoice(
        self,
        settings: Settings,
        redis: Redis,
        queue: Queue,
        run_worker: Any,
        sandbox_state: SandboxState,
        capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        event = stripe_samples.event(
            "payment_intent.succeeded",
            stripe_samples.payment_intent(invoice_id=42, amount=Decimal("100.00")),
        )
        webhook = await keep_unprocessed(settings, "stripe", json.dumps(event).encode())
        monkeypatch.setenv("REDIS_URL", settings.require_redis())
        monkeypatch.setenv("STRIPE_WEBHOOK_SECRETS", STRIPE_SECRET)
        short = webhook.key.rsplit(":", 1)[1][:16]

        assert cli_main(["unprocessed", "list"]) == 0
        listing = capsys.readouterr().out
        assert short in listing
        assert "OverflowError" in listing

        assert cli_main(["unprocessed", "replay", short]) == 0
        assert f"stripe:{event['id']}: queued" in capsys.readouterr().out
        assert queue.count == 1
        run_worker()
        assert sandbox_state.invoices[42]["PaidOn"] is not None
        assert UnprocessedWebhooks(Ops(settings, redis)).listed() == []
        history = Ops(settings, redis).trail.history(f"stripe:{event['id']}")
        assert [h["stage"] for h in history][:2] == ["received", "replayed"]

    async def test_what_still_cannot_be_read_stays_listed_until_dismissed(
        self,
        settings: Settings,
        redis: Redis,
        queue: Queue,
        capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        webhook = await keep_unprocessed(settings, "stripe", b'{"id": "evt_1", "type": ')
        monkeypatch.setenv("REDIS_URL", settings.require_redis())
        monkeypatch.setenv("STRIPE_WEBHOOK_SECRETS", STRIPE_SECRET)
        short = webhook.key.rsplit(":", 1)[1][:16]

        assert cli_main(["unprocessed", "replay", short]) == 1
        assert "still cannot be normalised: malformed_payload" in capsys.readouterr().out
        assert queue.count == 0
        assert [w.reason for w in UnprocessedWebhooks(Ops(settings, redis)).listed()] == [
            "malformed_payload: body is not valid JSON: JSONDecodeError"
        ]
        assert cli_main(["unprocessed", "dismiss", short]) == 0
        assert UnprocessedWebhooks(Ops(settings, redis)).listed() == []


async def test_kept_only_once_the_replicas_asked_for_hold_it(
    aiohttp_client: AiohttpClient, settings: Settings, redis: Redis
) -> None:
    """With REDIS_ACK_REPLICAS, an unprocessed webhook is acknowledged as a queued one is:
    once replicas hold it; with none there, 503 and the provider retries."""
    app = create_app(with_settings(settings, redis_ack_replicas=1, redis_ack_timeout_ms=50))
    client = await aiohttp_client(app)
    body = deeply_nested("events")
    signature = hmac.new(GOCARDLESS_SECRET.encode(), body, hashlib.sha256).hexdigest()
    headers = {"Webhook-Signature": signature, "Content-Type": "application/json"}
    status, answer = await post_webhook(client, "gocardless", body, headers)
    assert (status, answer["error"]) == (503, "queue_unavailable")
