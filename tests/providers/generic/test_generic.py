"""Operators' own systems: Standard Webhooks signatures and the published JSON Schema."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from rq import Queue

from payhooks.devtools.sandbox.nexudus import SandboxState
from payhooks.providers.generic import sample as samples
from payhooks.providers.generic.settings import GenericSettings
from payhooks.settings import ConfigError, Settings
from tests.support.client import post_webhook
from tests.support.delivery import deliver
from tests.support.processes import RunWorker
from tests.support.settings import GENERIC_SECRET, OLD_GENERIC_SECRET

#: The source the test settings configure: /webhooks/generic/bank.
BANK = "generic/bank"


class TestReceiver:
    async def test_signed_notification_is_queued_once_per_webhook_id(
        self, client: TestClient, queue: Queue
    ) -> None:
        body, headers = samples.signed(
            samples.notification(invoice_id=42, amount="100.00"), GENERIC_SECRET
        )
        assert (await post_webhook(client, BANK, body, headers))[1]["status"] == "accepted"
        assert (await post_webhook(client, BANK, body, headers))[1]["status"] == "duplicate"
        assert queue.count == 1

    async def test_previous_secret_accepted_during_rotation(self, client: TestClient) -> None:
        body, headers = samples.signed(
            samples.notification(invoice_id=42, amount="1.00"), OLD_GENERIC_SECRET
        )
        assert (await post_webhook(client, BANK, body, headers))[0] == 200

    @pytest.mark.parametrize(
        ("make", "reason"),
        [
            (lambda b: samples.signed(b, "whsec_d3Jvbmctc2VjcmV0")[1], "signature does not match"),
            (
                lambda b: samples.signed(
                    b, GENERIC_SECRET, timestamp=datetime.now(tz=UTC) - timedelta(minutes=6)
                )[1],
                "timestamp outside the 5-minute window",
            ),
            (
                lambda b: {**samples.signed(b, GENERIC_SECRET)[1], "webhook-signature": "garbage"},
                "malformed webhook-signature header",
            ),
            (
                lambda b: {"Content-Type": "application/json"},
                "missing webhook-id, webhook-timestamp or webhook-signature",
            ),
        ],
    )
    async def test_bad_signature_is_401_and_queues_nothing(
        self, client: TestClient, queue: Queue, make: Any, reason: str
    ) -> None:
        body = json.dumps(samples.notification(invoice_id=42, amount="100.00")).encode()
        status, answer = await post_webhook(client, BANK, body, make(body))
        assert (status, answer["reason"]) == (401, reason)
        assert queue.count == 0

    async def test_body_against_the_schema_is_422_with_every_complaint(
        self, client: TestClient, queue: Queue
    ) -> None:
        bad = samples.notification(invoice_id=None, amount="10,50", provider=2, kind="settled")
        status, answer = await post_webhook(client, BANK, *samples.signed(bad, GENERIC_SECRET))
        assert (status, answer["error"]) == (422, "invalid_payload")
        text = "\n".join(answer["errors"])
        assert "amount: '10,50' does not match" in text
        assert "provider: 2 is not one of" in text
        assert "kind: 'settled' is not one of" in text
        assert "(body): needs invoice_id or invoice_number" in text
        assert "BANK-TX" not in text  # the body is not echoed back
        assert queue.count == 0

    @pytest.mark.parametrize("invoice_id", [2**63, 2**64 - 1])
    async def test_an_invoice_id_past_a_signed_64_bit_integer_is_422_not_kept_unprocessed(
        self, client: TestClient, queue: Queue, invoice_id: int
    ) -> None:
        # No Nexudus id is that large, and a job cannot hold it (orjson reads such a number
        # but writes none past 2**63 - 1 into the job): the sender is told, not answered 200.
        huge = samples.notification(invoice_id=invoice_id, amount="100.00")
        status, answer = await post_webhook(client, BANK, *samples.signed(huge, GENERIC_SECRET))
        assert (status, answer["error"]) == (422, "invalid_payload")
        assert any(error.startswith("invoice_id:") for error in answer["errors"])
        assert queue.count == 0

    async def test_unknown_source_is_404(self, client: TestClient) -> None:
        body, headers = samples.signed(
            samples.notification(invoice_id=42, amount="1.00"), GENERIC_SECRET
        )
        status = (
            await client.post("/webhooks/generic/cashdesk", data=body, headers=headers)
        ).status
        assert status == 404


def test_cash_payment_marks_the_invoice_paid(
    settings: Settings, sandbox_state: SandboxState, run_worker: RunWorker
) -> None:
    notification = samples.notification(
        invoice_id=43, amount="100.00", provider=97, notes="front desk"
    )
    deliver(settings, BANK, samples.signed(notification, GENERIC_SECRET))
    run_worker()
    [token] = sandbox_state.tokens.values()
    assert (token["Token"], token["RegularPaymentProvider"]) == (notification["reference"], 97)
    assert "notes front desk" in token["Notes"]
    assert sandbox_state.invoices[43]["PaidOn"] == notification["paid_at"]


def test_invoice_number_instead_of_id(
    settings: Settings, sandbox_state: SandboxState, run_worker: RunWorker
) -> None:
    notification = samples.notification(
        invoice_id=None, amount="100.00", invoice_number="INV-00042"
    )
    deliver(settings, BANK, samples.signed(notification, GENERIC_SECRET))
    run_worker()
    assert sandbox_state.invoices[42]["PaidOn"] is not None


@pytest.mark.parametrize("value", ["bank", "Bank:whsec_x", "bank:", ":whsec_x"])
def test_malformed_sources_stop_start_up(value: str) -> None:
    if value == "bank":
        with pytest.raises(ConfigError, match="GENERIC_WEBHOOK_SECRETS"):
            Settings.from_env({"GENERIC_WEBHOOK_SECRETS": value})
        return
    with pytest.raises(ConfigError, match="GENERIC_WEBHOOK_SECRETS"):
        Settings.from_env({"GENERIC_WEBHOOK_SECRETS": value})


def test_several_secrets_per_source() -> None:
    settings = Settings.from_env(
        {"GENERIC_WEBHOOK_SECRETS": "bank:whsec_a,cash:whsec_c,bank:whsec_b"}
    )
    assert settings.provider(GenericSettings).webhook_secrets == {
        "bank": ("whsec_a", "whsec_b"),
        "cash": ("whsec_c",),
    }
