"""Braintree: the SDK verifies and parses; its own signed samples are accepted."""

from __future__ import annotations

from decimal import Decimal
from urllib.parse import urlencode

import pytest
from aiohttp.test_utils import TestClient
from redis import Redis
from rq import Queue

from payhooks.devtools.sandbox.nexudus import SandboxState
from payhooks.domain.events import Ignored, PaymentEvent, PaymentKind
from payhooks.providers.braintree import sample as samples
from payhooks.settings import Settings
from tests.support.client import post_webhook
from tests.support.delivery import deliver
from tests.support.processes import RunWorker
from tests.support.provider_payloads import braintree_paid, braintree_sdk_sample
from tests.support.settings import BRAINTREE_PRIVATE, BRAINTREE_PUBLIC

FORM = {"Content-Type": "application/x-www-form-urlencoded"}


async def test_sdk_samples_verify_and_are_acknowledged(client: TestClient, queue: Queue) -> None:
    for kind in ("transaction_settled", "subscription_charged_successfully", "check"):
        status, answer = await post_webhook(
            client, "braintree", braintree_sdk_sample(kind, "sub_or_txn_1"), FORM
        )
        assert status == 200, answer
    # The SDK's samples carry no order id: acknowledged, nothing to apply.
    assert queue.count == 0


async def test_signed_transaction_is_queued_once(client: TestClient, queue: Queue) -> None:
    body = braintree_paid()
    _, first = await post_webhook(client, "braintree", body, FORM)
    _, second = await post_webhook(client, "braintree", body, FORM)
    assert (first["status"], second["status"]) == ("accepted", "duplicate")
    assert queue.count == 1


@pytest.mark.parametrize(
    "tamper", ["wrong private key", "unknown public key", "modified payload", "missing"]
)
async def test_bad_signature_is_400(client: TestClient, queue: Queue, tamper: str) -> None:
    if tamper == "wrong private key":
        body = braintree_paid(private="not_the_key")
    elif tamper == "unknown public key":
        body = braintree_paid(public="someone_else", private="their_key")
    elif tamper == "modified payload":
        body = braintree_paid().replace(b"bt_payload=", b"bt_payload=AAAA")
    else:
        body = b"bt_payload=abc"
    status, answer = await post_webhook(client, "braintree", body, FORM)
    assert (status, answer["error"]) == (400, "invalid_signature")
    assert queue.count == 0


async def test_legacy_challenge_is_answered(client: TestClient) -> None:
    response = await client.get("/webhooks/braintree?bt_challenge=20f9f8ed05f77439fe955c977e4c8a53")
    text = await response.text()
    assert response.status == 200
    assert text.startswith(f"{BRAINTREE_PUBLIC}|")


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("transaction_settled", PaymentKind.PAID),
        ("subscription_charged_successfully", PaymentKind.PAID),
        ("transaction_settlement_declined", PaymentKind.FAILED),
        ("subscription_charged_unsuccessfully", PaymentKind.FAILED),
        ("subscription_went_past_due", None),
    ],
)
def test_kind_mapping(settings: Settings, kind: str, expected: PaymentKind | None) -> None:
    from payhooks.providers.receivers import build_providers

    provider = build_providers(settings)["braintree"]
    [result] = provider.normalise(braintree_paid(kind), {})
    if expected is None:
        assert isinstance(result, Ignored)
        return
    assert isinstance(result, PaymentEvent)
    assert (result.kind, result.invoice.invoice_id, result.amount) == (
        expected,
        42,
        Decimal("100.00"),
    )
    assert result.regular_payment_provider == 8


@pytest.mark.parametrize(
    ("kind", "money_left"),  # None: the money came back
    [
        # Braintree debits a chargeback when it is opened; accepted, lost or expired, the
        # money stays with the customer; won, it comes back; contested or under review,
        # nothing moves (paypal.com/us/selfhelp/article/faq3379).
        ("dispute_opened", True),
        ("dispute_accepted", True),
        ("dispute_auto_accepted", True),
        ("dispute_lost", True),
        ("dispute_expired", True),
        ("dispute_won", None),
        ("dispute_disputed", False),
        ("dispute_under_review", False),
    ],
)
def test_disputes_undo_the_payment_only_when_money_left(
    settings: Settings, kind: str, money_left: bool | None
) -> None:
    from payhooks.providers.receivers import build_providers

    provider = build_providers(settings)["braintree"]
    [paid] = provider.normalise(braintree_paid(transaction_id="txn_4242"), {})
    # The SDK's own sample (braintree/webhook_testing_gateway.py, sample_notification):
    # a chargeback of 100.00 USD on transaction "txn_4242".
    [dispute] = provider.normalise(braintree_sdk_sample(kind, "txn_4242"), {})
    assert isinstance(paid, PaymentEvent)
    if money_left is False:
        assert isinstance(dispute, Ignored)
        return
    assert isinstance(dispute, PaymentEvent)
    assert (dispute.kind, dispute.token, dispute.amount, dispute.currency) == (
        PaymentKind.REFUNDED if money_left else PaymentKind.REINSTATED,
        paid.token,
        Decimal("100.00"),
        "USD",
    )


def test_a_retrieval_is_not_money_leaving(settings: Settings) -> None:
    from base64 import b64decode
    from urllib.parse import parse_qs

    from payhooks.providers.receivers import build_providers

    # The SDK's dispute_opened sample with the dispute kind Braintree uses for a request
    # for information ("retrieval"), signed by the SDK's own crypto helper.
    payload = parse_qs(braintree_sdk_sample("dispute_opened", "txn_4242").decode())["bt_payload"][0]
    xml = b64decode(payload).decode().replace("<kind>chargeback</kind>", "<kind>retrieval</kind>")
    [result] = build_providers(settings)["braintree"].normalise(
        samples.signed(xml, BRAINTREE_PUBLIC, BRAINTREE_PRIVATE)[0], {}
    )
    assert isinstance(result, Ignored)
    assert "retrieval" in result.reason


def test_settled_transaction_marks_the_invoice_paid(
    settings: Settings, sandbox_state: SandboxState, run_worker: RunWorker
) -> None:
    deliver(settings, "braintree", braintree_paid(kind="subscription_charged_successfully"))
    run_worker()
    [token] = sandbox_state.tokens.values()
    assert token["RegularPaymentProvider"] == 8
    assert "payment_method_token pm_token_1" in token["Notes"]
    assert "subscription sub_" in token["Notes"]
    assert sandbox_state.invoices[42]["PaidOn"] is not None


def test_card_details_are_redacted_in_the_trail(settings: Settings, redis: Redis) -> None:
    from payhooks.providers.receivers import build_providers
    from payhooks.storage.trail import Trail

    xml = samples.transaction_notification("transaction_settled", order_id="42", amount=Decimal(1))
    xml = xml.replace(
        "</transaction>",
        "<credit-card><bin>411111</bin><last-4>1111</last-4><expiration-month>12</expiration-month>"
        "<card-type>Visa</card-type></credit-card></transaction>",
    )
    body = samples.signed(xml, BRAINTREE_PUBLIC, BRAINTREE_PRIVATE)[0]
    assert build_providers(settings)["braintree"].redact(body) is not None
    deliver(settings, "braintree", body)
    trail = Trail(redis, ttl_seconds=60)
    [key] = [k.decode() for k in redis.scan_iter("payhooks:webhook:*")]
    stored = trail.webhook(key)
    assert stored is not None
    assert stored["redacted"] is True
    from base64 import b64decode
    from urllib.parse import parse_qs

    payload = b64decode(parse_qs(stored["body"].decode())["bt_payload"][0]).decode()
    assert "411111" not in payload
    assert "<last-4>[redacted]</last-4>" in payload
    assert "<card-type>Visa</card-type>" in payload


async def test_signature_with_several_pairs_uses_ours(client: TestClient, queue: Queue) -> None:
    from urllib.parse import parse_qs

    fields = parse_qs(braintree_paid().decode())
    fields["bt_signature"] = ["someone_else|00ff&" + fields["bt_signature"][0]]
    body = urlencode({k: v[0] for k, v in fields.items()}).encode()
    status, _ = await post_webhook(client, "braintree", body, FORM)
    assert status == 200
    assert queue.count == 1
