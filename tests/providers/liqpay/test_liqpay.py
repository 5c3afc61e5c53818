"""LiqPay: signed form callbacks, the documentation's test vector, and the status map."""

from __future__ import annotations

import base64
import json
from decimal import Decimal
from urllib.parse import parse_qsl, urlencode

import pytest
from aiohttp.test_utils import TestClient
from rq import Queue

from payhooks.devtools.sandbox.nexudus import SandboxState
from payhooks.domain.events import Ignored, PaymentEvent, PaymentKind
from payhooks.providers.kit.receiver_errors import InvalidSignature, MalformedPayload
from payhooks.providers.liqpay import sample as samples
from payhooks.providers.liqpay.receiver import LiqPayWebhook, signature_of
from payhooks.providers.liqpay.settings import LiqPaySettings
from payhooks.settings import Settings
from tests.support.client import post_webhook
from tests.support.delivery import deliver
from tests.support.processes import RunWorker
from tests.support.settings import LIQPAY_KEY, OLD_LIQPAY_KEY, with_section


def test_documentation_vector_verifies() -> None:
    # www.liqpay.ua/documentation/en/api/callback: this key and data give this signature.
    assert signature_of("your_private_key", "base64_post_string") == "tp+ZLmKm1/E83dIzUpx5ljcttP4="
    provider = LiqPayWebhook(
        LiqPaySettings(private_keys=("your_private_key",), allow_sandbox=False)
    )
    body = urlencode(
        {"data": "base64_post_string", "signature": "tp+ZLmKm1/E83dIzUpx5ljcttP4="}
    ).encode()
    provider.verify(body, {})  # no exception: authentic
    with pytest.raises(MalformedPayload):
        provider.normalise(body, {})  # but the doc's data is a placeholder, not a payment


def test_sha3_256_vector_verifies() -> None:
    # LiqPay publishes no SHA3-256 example (its SDKs, liqpay/sdk-python and liqpay/sdk-php,
    # still sign with SHA-1 only), so this vector is computed from the formula
    # base64(sha3-256(private_key + data + private_key)) over the documentation's own
    # inputs, with Python's hashlib and, independently, `openssl dgst -binary -sha3-256`.
    vector = "ZsPPnP2GD1ucBV6iz8qYeZHDTdnHaXJ2MSdERXL37aY="
    assert signature_of("your_private_key", "base64_post_string", "sha3_256") == vector
    provider = LiqPayWebhook(
        LiqPaySettings(private_keys=("your_private_key",), allow_sandbox=False)
    )
    provider.verify(urlencode({"data": "base64_post_string", "signature": vector}).encode(), {})
    tampered = urlencode({"data": "base64_post_strinG", "signature": vector}).encode()
    with pytest.raises(InvalidSignature):
        provider.verify(tampered, {})


class TestReceiver:
    async def test_signed_callback_is_queued_once(self, client: TestClient, queue: Queue) -> None:
        body, headers = samples.signed(
            samples.payment(order_id="42", amount=Decimal(100)), LIQPAY_KEY
        )
        assert (await post_webhook(client, "liqpay", body, headers))[1]["status"] == "accepted"
        assert (await post_webhook(client, "liqpay", body, headers))[1]["status"] == "duplicate"
        assert queue.count == 1

    async def test_sha3_signed_callback_is_queued(self, client: TestClient, queue: Queue) -> None:
        body, headers = samples.signed(
            samples.payment(order_id="42", amount=Decimal(100)), LIQPAY_KEY, "sha3_256"
        )
        assert (await post_webhook(client, "liqpay", body, headers))[1]["status"] == "accepted"
        assert queue.count == 1

    async def test_previous_key_accepted_during_a_change(
        self, client: TestClient, queue: Queue
    ) -> None:
        body, headers = samples.signed(
            samples.payment(order_id="42", amount=Decimal(1)), OLD_LIQPAY_KEY
        )
        assert (await post_webhook(client, "liqpay", body, headers))[0] == 200

    @pytest.mark.parametrize(
        "tamper", ["wrong key", "modified data", "no signature", "not ASCII", "sha3, wrong key"]
    )
    async def test_bad_signature_is_400_and_queues_nothing(
        self, client: TestClient, queue: Queue, tamper: str
    ) -> None:
        payment = samples.payment(order_id="42", amount=Decimal(100))
        data = base64.b64encode(json.dumps(payment).encode()).decode()
        fields = {"data": data, "signature": signature_of(LIQPAY_KEY, data)}
        if tamper == "wrong key":
            fields["signature"] = signature_of("another_key", data)
        elif tamper == "sha3, wrong key":
            fields["signature"] = signature_of("another_key", data, "sha3_256")
        elif tamper == "not ASCII":
            fields["signature"] = "tp+ZLmKm1/E83dIzUpx5ljcttP4\u00e9"
        elif tamper == "modified data":
            fields["data"] = base64.b64encode(
                json.dumps({**payment, "amount": 1000.0}).encode()
            ).decode()
        else:
            del fields["signature"]
        status, answer = await post_webhook(
            client,
            "liqpay",
            urlencode(fields).encode(),
            {"Content-Type": "application/x-www-form-urlencoded"},
        )
        assert (status, answer["error"]) == (400, "invalid_signature")
        assert queue.count == 0

    async def test_json_content_type_is_415(self, client: TestClient) -> None:
        body, _ = samples.signed(samples.payment(order_id="42", amount=Decimal(1)), LIQPAY_KEY)
        status, _ = await post_webhook(client, "liqpay", body, {"Content-Type": "application/json"})
        assert status == 415


@pytest.mark.parametrize(
    ("status", "allow_sandbox", "kind"),
    [
        ("success", False, PaymentKind.PAID),
        ("sandbox", True, PaymentKind.PAID),
        ("sandbox", False, None),
        ("failure", False, PaymentKind.FAILED),
        ("error", False, PaymentKind.FAILED),
        ("reversed", False, PaymentKind.REFUNDED),
        ("wait_accept", False, PaymentKind.PENDING),
        ("3ds_verify", False, PaymentKind.PENDING),
        ("subscribed", False, None),
    ],
)
def test_status_maps_to_kind(status: str, allow_sandbox: bool, kind: PaymentKind | None) -> None:
    provider = LiqPayWebhook(
        LiqPaySettings(private_keys=(LIQPAY_KEY,), allow_sandbox=allow_sandbox)
    )
    payment = samples.payment(order_id="42", amount=Decimal("12.34"), status=status, payment_id=77)
    [result] = provider.normalise(samples.signed(payment, LIQPAY_KEY)[0], {})
    if kind is None:
        assert isinstance(result, Ignored)
        return
    assert isinstance(result, PaymentEvent)
    assert (result.kind, result.token, result.invoice.invoice_id) == (kind, "77", 42)
    assert result.amount == Decimal("12.34")
    assert result.regular_payment_provider == 10


def test_paid_callback_marks_the_invoice_paid(
    settings: Settings, sandbox_state: SandboxState, run_worker: RunWorker
) -> None:
    sandbox_state.invoices[44]["CurrencyCode"] = "UAH"
    payment = samples.payment(order_id="44", amount=Decimal("100.00"), currency="UAH")
    deliver(settings, "liqpay", samples.signed(payment, LIQPAY_KEY))
    run_worker()
    [token] = sandbox_state.tokens.values()
    assert (token["Token"], token["RegularPaymentProvider"]) == (str(payment["payment_id"]), 10)
    assert sandbox_state.invoices[44]["PaidOn"] is not None


def test_sandbox_payments_are_applied_only_when_allowed(
    settings: Settings, sandbox_state: SandboxState, run_worker: RunWorker
) -> None:
    payment = samples.payment(
        order_id="42", amount=Decimal("100.00"), currency="EUR", status="sandbox"
    )
    deliver(settings, "liqpay", samples.signed(payment, LIQPAY_KEY))
    run_worker()
    assert sandbox_state.invoices[42]["PaidOn"] is None
    allowed = with_section(settings, LiqPaySettings, allow_sandbox=True)
    deliver(allowed, "liqpay", samples.signed(dict(payment, payment_id=5), LIQPAY_KEY))
    run_worker()
    assert sandbox_state.invoices[42]["PaidOn"] is not None


def test_card_mask_is_redacted() -> None:
    provider = LiqPayWebhook(LiqPaySettings(private_keys=(LIQPAY_KEY,), allow_sandbox=False))
    body, _ = samples.signed(samples.payment(order_id="42", amount=Decimal(1)), LIQPAY_KEY)
    redacted = provider.redact(body)
    assert redacted is not None
    [event] = provider.normalise(redacted, {})  # still re-normalisable
    assert isinstance(event, PaymentEvent)
    data = dict(parse_qsl(redacted.decode()))["data"]
    assert b"424242" not in base64.b64decode(data)
