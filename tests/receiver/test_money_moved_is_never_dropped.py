"""A verified webhook saying money moved that we cannot place is kept, never acknowledged
and forgotten (issue 17, point 6): listed as unprocessed with the reason, counted, alerted
on, replayable (README, "Unprocessed webhooks"), and nothing queued.

Bodies: PayPal's webhook simulator's PAYMENT.SALE.REVERSED (tests/fixtures/paypal: a
refund with only its `self` link) and its PAYMENT.CAPTURE.COMPLETED-shaped sample
(payhooks/devtools/samples/paypal.py) without a readable amount; PayPal's IPN (IPN
variables reference) for a reversal without parent_txn_id; Stripe's refund object from
stripe/openapi fixtures3 shapes (samples) naming neither charge nor PaymentIntent; a
GoCardless refund event without links; a LiqPay `success` without amount; a Forte credit
(Forte's published sample webhook, action credit). Payhooks holds no PayPal API
credentials, so PayPal's cannot be looked up: unprocessed is the answer for it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from redis import Redis
from rq import Queue

from payhooks.cli.ops import Ops
from payhooks.cli.unprocessed import UnprocessedWebhooks
from payhooks.devtools.sandbox.server import ThreadedServer
from payhooks.providers.forte import sample as forte_samples
from payhooks.providers.forte.settings import ForteSettings
from payhooks.providers.gocardless import sample as gocardless_samples
from payhooks.providers.liqpay import sample as liqpay_samples
from payhooks.providers.paypal import sample as paypal_samples
from payhooks.providers.paypal.stand_in import CERT_PATH, PayPalState
from payhooks.providers.stripe import sample as stripe_samples
from payhooks.settings import Settings
from tests.support.client import post_webhook
from tests.support.paths import FIXTURES
from tests.support.settings import GOCARDLESS_SECRET, LIQPAY_KEY, PAYPAL_WEBHOOK_ID, STRIPE_SECRET

FORM = {"Content-Type": "application/x-www-form-urlencoded"}
Request = tuple[str, bytes, dict[str, str]]


def paypal(sandbox: ThreadedServer, state: PayPalState, body: bytes) -> Request:
    headers = paypal_samples.headers_for(
        body, PAYPAL_WEBHOOK_ID, sandbox.url + CERT_PATH, state.sign
    )
    return "paypal", body, headers


def paypal_sale_reversed(sandbox: ThreadedServer, state: PayPalState, _: Settings) -> Request:
    return paypal(sandbox, state, (FIXTURES / "paypal" / "sale_reversed.json").read_bytes())


def paypal_capture_without_amount(
    sandbox: ThreadedServer, state: PayPalState, _: Settings
) -> Request:
    event = paypal_samples.capture_event(invoice_id="42", amount=Decimal(100))
    event["resource"]["amount"] = {"currency_code": "EUR", "value": "one hundred"}
    return paypal(sandbox, state, paypal_samples.encoded(event))


def ipn_reversal_without_parent(*_: Any) -> Request:
    body = paypal_samples.ipn(
        invoice="42", amount=Decimal("-100.00"), status="Reversed", txn_id="REV1"
    )
    return "paypal-ipn", body, FORM


def ipn_completed_without_amount(*_: Any) -> Request:
    body = paypal_samples.ipn(invoice="42", amount=Decimal(1), txn_id="NOAMT").replace(
        b"mc_gross=1.00", b"mc_gross="
    )
    return "paypal-ipn", body, FORM


def stripe_refund_naming_no_payment(*_: Any) -> Request:
    refund = {"id": "re_1Orphan", "object": "refund", "amount": 1000, "currency": "eur"}
    body, headers = stripe_samples.signed(
        stripe_samples.event("refund.created", refund), STRIPE_SECRET
    )
    return "stripe", body, headers


def gocardless_refund_without_links(*_: Any) -> Request:
    event = {**gocardless_samples.refund_event("RF000ORPHAN"), "links": {}}
    body, headers = gocardless_samples.signed([event], GOCARDLESS_SECRET)
    return "gocardless", body, headers


def liqpay_success_without_amount(*_: Any) -> Request:
    payment = liqpay_samples.payment(order_id="42", amount=Decimal(100))
    del payment["amount"]
    body, headers = liqpay_samples.signed(payment, LIQPAY_KEY)
    return "liqpay", body, headers


def forte_credit(_: ThreadedServer, __: PayPalState, settings: Settings) -> Request:
    body, headers = forte_samples.encoded(forte_samples.webhook(action="credit", status="ready"))
    token = settings.provider(ForteSettings).webhook_tokens[0]
    return f"forte/{token}", body, headers


CASES: dict[str, Callable[[ThreadedServer, PayPalState, Settings], Request]] = {
    "paypal: published sale reversal naming no sale": paypal_sale_reversed,
    "paypal: capture completed, amount unreadable": paypal_capture_without_amount,
    "paypal-ipn: reversal without parent_txn_id": ipn_reversal_without_parent,
    "paypal-ipn: completed without mc_gross": ipn_completed_without_amount,
    "stripe: refund naming no charge or PaymentIntent": stripe_refund_naming_no_payment,
    "gocardless: refund event without links": gocardless_refund_without_links,
    "liqpay: success without amount": liqpay_success_without_amount,
    "forte: credit": forte_credit,
}


async def unprocessed_count(client: TestClient, provider: str) -> float:
    text = await (await client.get("/metrics")).text()
    found = re.search(
        rf'^payhooks_webhooks_total{{outcome="unprocessed",provider="{provider}"}} (\S+)$',
        text,
        re.MULTILINE,
    )
    return float(found.group(1)) if found else 0.0


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
async def test_kept_listed_and_counted_not_acknowledged_and_forgotten(
    client: TestClient,
    settings: Settings,
    redis: Redis,
    queue: Queue,
    sandbox: ThreadedServer,
    paypal_state: PayPalState,
    case: Callable[[ThreadedServer, PayPalState, Settings], Request],
) -> None:
    path, body, headers = case(sandbox, paypal_state, settings)
    provider = path.split("/")[0]
    before = await unprocessed_count(client, provider)  # the counter is per process
    status, answer = await post_webhook(client, path, body, headers)
    assert (status, answer["status"]) == (200, "unprocessed"), answer
    assert queue.count == 0
    [listed] = UnprocessedWebhooks(Ops(settings, redis)).listed()
    assert listed.provider == provider
    assert listed.reason.startswith("malformed_payload: "), listed.reason
    assert await unprocessed_count(client, provider) == before + 1
    assert json.dumps(answer)  # answered, so the provider does not retry for days
