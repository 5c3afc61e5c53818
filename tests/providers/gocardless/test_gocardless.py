"""GoCardless: batched signed webhooks, payment lookups, and the same Nexudus guarantees."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from redis import Redis
from rq import Queue

from payhooks.devtools.sandbox.nexudus import INVOICES, TOKENS, SandboxState
from payhooks.domain.events import Ignored, PaymentEvent, PaymentKind
from payhooks.providers.gocardless import sample as samples
from payhooks.providers.gocardless.receiver import normalise_event
from payhooks.providers.gocardless.settings import GoCardlessSettings
from payhooks.providers.gocardless.stand_in import GoCardlessState
from payhooks.providers.receivers import build_providers
from payhooks.settings import Settings
from payhooks.storage import redis_keys
from service.app import create_app
from tests.support.client import post_webhook
from tests.support.delivery import deliver, finished, queued_job, writes
from tests.support.paths import FIXTURES
from tests.support.processes import RunWorker
from tests.support.provider_payloads import add_payment, add_refund
from tests.support.settings import GOCARDLESS_SECRET, OLD_GOCARDLESS_SECRET, with_section

# The signed example that ships with gocardless-pro-python's own tests
# (tests/fixtures/webhook_body.json with its key and signature in tests/webhooks_test.py):
# a subscription and a mandate event.
SDK_BODY = (FIXTURES / "gocardless_webhook_body.json").read_bytes()
SDK_KEY = "ED7D658C-D8EB-4941-948B-3973214F2D49"
SDK_SIGNATURE = "2693754819d3e32d7e8fcb13c729631f316c6de8dc1cf634d6527f1c07276e7e"


class TestReceiver:
    async def test_sdk_signed_example_is_verified_and_acknowledged_without_a_job(
        self,
        aiohttp_client: Any,
        settings: Settings,
        redis: Redis,
        queue: Queue,
        sandbox_state: SandboxState,
    ) -> None:
        sdk = with_section(settings, GoCardlessSettings, webhook_secrets=(SDK_KEY,))
        client = await aiohttp_client(create_app(sdk))
        status, _ = await post_webhook(
            client,
            "gocardless",
            SDK_BODY,
            {"Webhook-Signature": SDK_SIGNATURE, "Content-Type": "application/json"},
        )
        assert status == 204
        assert queue.count == 0
        assert sandbox_state.calls == []
        metrics = await (await client.get("/metrics")).text()
        assert 'payhooks_events_total{outcome="ignored",provider="gocardless"} 2.0' in metrics

    @pytest.mark.parametrize(
        "headers",
        [
            {"Content-Type": "application/json"},
            {"Content-Type": "application/json", "Webhook-Signature": SDK_SIGNATURE},
            {"Content-Type": "application/json", "Webhook-Signature": "not-hex"},
        ],
    )
    async def test_bad_or_missing_signature_is_498(
        self, client: TestClient, queue: Queue, headers: dict[str, str]
    ) -> None:
        body, _ = samples.signed([samples.payment_event(samples.payment_id())], GOCARDLESS_SECRET)
        status, answer = await post_webhook(client, "gocardless", body, headers)
        assert (status, answer["error"]) == (498, "invalid_signature")
        assert queue.count == 0

    async def test_tampered_body_is_498(self, client: TestClient, queue: Queue) -> None:
        body, headers = samples.signed([samples.payment_event("PM123")], GOCARDLESS_SECRET)
        status, _ = await post_webhook(
            client, "gocardless", body.replace(b"PM123", b"PM999"), headers
        )
        assert status == 498
        assert queue.count == 0

    async def test_previous_secret_accepted_during_a_change(
        self, client: TestClient, queue: Queue
    ) -> None:
        body, headers = samples.signed([samples.payment_event("PM1")], OLD_GOCARDLESS_SECRET)
        assert (await post_webhook(client, "gocardless", body, headers))[0] == 200
        assert queue.count == 1

    async def test_batch_mixing_payment_and_other_events(
        self, client: TestClient, queue: Queue
    ) -> None:
        events = [
            samples.other_event("mandates", "active"),
            samples.payment_event("PM1", "confirmed"),
            samples.other_event("payouts", "paid"),
            samples.payment_event("PM2", "created"),
        ]
        status, answer = await post_webhook(
            client, "gocardless", *samples.signed(events, GOCARDLESS_SECRET)
        )
        assert (status, answer["queued"], answer["ignored"]) == (200, 2, 2)
        assert sorted(queue.job_ids) == sorted(
            redis_keys.job_id(f"gocardless:{e['id']}") for e in (events[1], events[3])
        )

    async def test_redelivered_batch_creates_no_duplicate_jobs(
        self, client: TestClient, queue: Queue
    ) -> None:
        first = [samples.payment_event("PM1"), samples.payment_event("PM2")]
        await post_webhook(client, "gocardless", *samples.signed(first, GOCARDLESS_SECRET))
        again = [first[1], samples.payment_event("PM3")]
        status, answer = await post_webhook(
            client, "gocardless", *samples.signed(again, GOCARDLESS_SECRET)
        )
        assert (status, answer["queued"], answer["duplicates"]) == (200, 1, 1)
        assert queue.count == 3


@pytest.mark.parametrize(
    ("resource", "action", "paid_action", "kind"),
    [
        ("payments", "confirmed", "confirmed", PaymentKind.PAID),
        ("payments", "paid_out", "confirmed", PaymentKind.PAID),
        ("payments", "confirmed", "paid_out", PaymentKind.PENDING),
        ("payments", "paid_out", "paid_out", PaymentKind.PAID),
        ("payments", "created", "confirmed", PaymentKind.PENDING),
        ("payments", "submitted", "confirmed", PaymentKind.PENDING),
        ("payments", "customer_approval_granted", "confirmed", PaymentKind.PENDING),
        ("payments", "failed", "confirmed", PaymentKind.FAILED),
        ("payments", "charged_back", "confirmed", PaymentKind.REFUNDED),
        ("payments", "cancelled", "confirmed", PaymentKind.FAILED),
        ("payments", "late_failure_settled", "confirmed", PaymentKind.REFUNDED),
        ("payments", "customer_approval_denied", "confirmed", PaymentKind.FAILED),
        ("refunds", "created", "confirmed", PaymentKind.REFUNDED),
        ("refunds", "paid", "confirmed", PaymentKind.REFUNDED),
        ("refunds", "refund_settled", "confirmed", PaymentKind.REFUNDED),
    ],
)
def test_action_maps_to_kind(
    resource: str, action: str, paid_action: str, kind: PaymentKind
) -> None:
    event = samples.payment_event("PM1", action, resource_type=resource)
    result = normalise_event(
        event, paid_action=paid_action, invoice_metadata_key="nexudus_invoice_id"
    )
    assert isinstance(result, PaymentEvent)
    assert result.kind is kind
    assert result.token == "PM1"
    assert result.regular_payment_provider == 12


@pytest.mark.parametrize("action", ["failed", "funds_returned"])
def test_a_refund_that_never_reached_the_customer_is_reinstated(action: str) -> None:
    # GoCardless's "Refund actions": the refund failed, the money came back to the merchant,
    # so the refund (recorded by its created event) no longer counts.
    result = normalise_event(
        samples.refund_event("RF123", action),
        paid_action="confirmed",
        invoice_metadata_key="nexudus_invoice_id",
    )
    assert isinstance(result, PaymentEvent)
    assert (result.kind, result.details["refund"]) == (PaymentKind.REINSTATED, "RF123")


def test_other_resources_are_ignored() -> None:
    for resource, action in (
        ("mandates", "active"),
        ("subscriptions", "created"),
        ("payouts", "paid"),
    ):
        result = normalise_event(
            samples.other_event(resource, action),
            paid_action="confirmed",
            invoice_metadata_key="nexudus_invoice_id",
        )
        assert isinstance(result, Ignored)


class TestWorker:
    def test_several_payment_events_for_different_invoices(
        self,
        settings: Settings,
        sandbox_state: SandboxState,
        gocardless_state: GoCardlessState,
        run_worker: RunWorker,
    ) -> None:
        payments = {i: add_payment(gocardless_state, i, mandate=f"MD00{i}") for i in (42, 43, 44)}
        deliver(
            settings,
            "gocardless",
            {"events": [samples.payment_event(p) for p in payments.values()]},
        )
        run_worker()
        for invoice_id, payment in payments.items():
            assert sandbox_state.invoices[invoice_id]["PaidOn"] is not None
            [token] = [
                t for t in sandbox_state.tokens.values() if t["CoworkerInvoiceId"] == invoice_id
            ]
            assert token["Token"] == payment
            assert token["RegularPaymentProvider"] == 12
            assert f"mandate MD00{invoice_id}" in token["Notes"]
            assert "event EV" in token["Notes"]

    def test_confirmed_then_paid_out_is_one_token_one_put(
        self,
        settings: Settings,
        sandbox_state: SandboxState,
        gocardless_state: GoCardlessState,
        run_worker: RunWorker,
    ) -> None:
        payment = add_payment(gocardless_state, 42)
        deliver(settings, "gocardless", {"events": [samples.payment_event(payment, "confirmed")]})
        run_worker()
        deliver(settings, "gocardless", {"events": [samples.payment_event(payment, "paid_out")]})
        run_worker()
        assert len(sandbox_state.tokens) == 1
        assert writes(sandbox_state) == [("POST", TOKENS, 200), ("PUT", INVOICES, 200)]

    def test_lookup_failing_transiently_then_succeeding(
        self,
        settings: Settings,
        sandbox_state: SandboxState,
        gocardless_state: GoCardlessState,
        run_worker: RunWorker,
        queue: Queue,
    ) -> None:
        payment = add_payment(gocardless_state, 42)
        gocardless_state.faults.extend([503, 429])
        event = samples.payment_event(payment)
        deliver(settings, "gocardless", {"events": [event]})
        run_worker()
        assert sandbox_state.invoices[42]["PaidOn"] is not None
        assert finished(queue.connection, f"gocardless:{event['id']}") == "applied"

    def test_payment_that_does_not_exist_fails_with_a_reason(
        self, settings: Settings, run_worker: RunWorker, queue: Queue
    ) -> None:
        event = samples.payment_event("PM000MISSING")
        deliver(settings, "gocardless", {"events": [event]})
        run_worker()
        job = queued_job(queue.connection, f"gocardless:{event['id']}")
        assert job.get_status() == "failed"
        failure = job.meta["failure"]
        assert failure["error_class"] == "ProviderLookupError"
        assert "no payment PM000MISSING" in failure["reason"]
        assert failure["attempt"] == 1

    def test_amount_below_outstanding_sets_no_paid_on(
        self,
        settings: Settings,
        sandbox_state: SandboxState,
        gocardless_state: GoCardlessState,
        run_worker: RunWorker,
    ) -> None:
        payment = add_payment(gocardless_state, 42, amount_minor=5000)
        deliver(settings, "gocardless", {"events": [samples.payment_event(payment)]})
        run_worker()
        assert sandbox_state.invoices[42]["PaidOn"] is None
        [token] = sandbox_state.tokens.values()
        assert (
            "partial payment: running total 50.00 of 100.00 EUR, 50.00 still due" in token["Notes"]
        )

    def test_invoice_found_by_payment_reference(
        self,
        settings: Settings,
        sandbox_state: SandboxState,
        gocardless_state: GoCardlessState,
        run_worker: RunWorker,
    ) -> None:
        payment = add_payment(gocardless_state, None, reference="REF43")
        deliver(settings, "gocardless", {"events": [samples.payment_event(payment)]})
        run_worker()
        assert sandbox_state.invoices[43]["PaidOn"] is not None

    def test_payment_for_no_invoice_is_ignored_without_writes(
        self,
        settings: Settings,
        sandbox_state: SandboxState,
        gocardless_state: GoCardlessState,
        run_worker: RunWorker,
        queue: Queue,
    ) -> None:
        payment = add_payment(gocardless_state, None)
        event = samples.payment_event(payment)
        deliver(settings, "gocardless", {"events": [event]})
        run_worker()
        assert sandbox_state.calls == []
        assert finished(queue.connection, f"gocardless:{event['id']}") == "ignored"

    def test_refund_carries_its_payments_token_and_a_positive_amount(
        self, settings: Settings, gocardless_state: GoCardlessState
    ) -> None:
        from payhooks.providers.gocardless.step import GoCardlessStep

        payment = add_payment(gocardless_state, 42, mandate="MD0042")
        # A partial refund, as GoCardless's refund created event names it: the refund only.
        add_refund(gocardless_state, "RF0001", payment, amount_minor=2500)
        [queued] = build_providers(settings)["gocardless"].normalise(
            json.dumps({"events": [samples.refund_event("RF0001")]}).encode(), {}
        )
        assert isinstance(queued, PaymentEvent)
        lookup = GoCardlessStep(
            settings.provider(GoCardlessSettings),
            invoice_metadata_key=settings.invoice_metadata_key,
        )
        refund = lookup(queued)
        # The paid event's token is the payment's PM id (test_several_payment_events...).
        assert (refund.kind, refund.token, refund.amount, refund.currency) == (
            PaymentKind.REFUNDED,
            payment,
            Decimal("25.00"),
            "EUR",
        )
        assert (refund.invoice.invoice_id, refund.details["mandate"]) == (42, "MD0042")

    @pytest.mark.parametrize("action", ["failed", "charged_back", "refunded"])
    def test_failures_write_nothing(
        self,
        settings: Settings,
        sandbox_state: SandboxState,
        gocardless_state: GoCardlessState,
        run_worker: RunWorker,
        queue: Queue,
        action: str,
    ) -> None:
        payment = add_payment(gocardless_state, 42)
        if action == "refunded":
            add_refund(gocardless_state, "RF0002", payment, amount_minor=10000)
            event = samples.refund_event("RF0002")
        else:
            event = samples.payment_event(payment, action)
        deliver(settings, "gocardless", {"events": [event]})
        run_worker()
        assert sandbox_state.calls == []
        # Applied as no write, not failed.
        assert finished(queue.connection, f"gocardless:{event['id']}") == "no_write"
