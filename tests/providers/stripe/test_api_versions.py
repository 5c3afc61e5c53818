"""Stripe API versions 2025-03-31.basil and later: one payment, one token, whatever the shape.

Payload sources:
- tests/fixtures/stripe_openapi_fixtures.json: Invoice, InvoicePayment, PaymentIntent and
  Event from stripe/openapi@f6c2a48 ``openapi/fixtures3.json`` (the current API version:
  no ``payment_intent``/``charge`` on Invoice, ``parent.subscription_details.metadata``),
  and the InvoicePayment examples of https://docs.stripe.com/api/invoice-payment/object
  (basil/clover: ``payment.payment_intent``) and of its ``?api-version=2025-11-17.preview``
  page (``payment_intent``/``charge`` at the top level).
- 2024-06-20 shapes: payhooks/providers/stripe/sample.py, shaped like the same fixtures
  before basil.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest
from redis import Redis
from rq import Queue
from rq.job import Job

from payhooks.cli.ops import Ops
from payhooks.devtools.sandbox.nexudus import SandboxState
from payhooks.domain.events import Ignored, PaymentEvent
from payhooks.providers.stripe import sample as samples
from payhooks.providers.stripe.receiver import normalise_event
from payhooks.providers.stripe.settings import StripeSettings
from payhooks.providers.stripe.stand_in import API_KEY, StripeState
from payhooks.settings import Settings
from tests.support.delivery import deliver, finished, queued_job
from tests.support.paths import FIXTURES
from tests.support.processes import RunWorker, run_burst_worker
from tests.support.settings import with_section

OPENAPI = json.loads((FIXTURES / "stripe_openapi_fixtures.json").read_text())
BASIL = "2025-03-31.basil"
CLOVER = "2025-09-30.clover"


def fixture(name: str) -> dict[str, Any]:
    return copy.deepcopy(OPENAPI["fixtures3"][name])


def docs_example(name: str) -> dict[str, Any]:
    return copy.deepcopy(OPENAPI["docs_examples"][name]["object"])


class Payment:
    """One Stripe Billing payment of Nexudus invoice 42, in basil/clover shapes: the
    PaymentIntent Billing made (no metadata of its own), the paid Invoice carrying the
    subscription's metadata, and the InvoicePayment linking them."""

    def __init__(self, api_version: str = BASIL, *, amount_minor: int = 10000) -> None:
        self.api_version = api_version
        suffix = api_version.split(".")[-1]
        self.intent = fixture("payment_intent")  # openapi fixtures3 payment_intent
        self.intent.update(
            id=f"pi_{suffix}Billing0001",
            amount=amount_minor,
            amount_received=amount_minor,
            currency="eur",
            status="succeeded",
            livemode=True,
        )
        self.invoice = fixture("invoice")  # openapi fixtures3 invoice: no payment_intent
        assert "payment_intent" not in self.invoice
        assert "charge" not in self.invoice
        self.invoice.update(
            id=f"in_{suffix}Billing0001",
            amount_due=amount_minor,
            amount_paid=amount_minor,
            amount_remaining=0,
            currency="eur",
            status="paid",
            livemode=True,
        )
        self.invoice["parent"] = {
            "type": "subscription_details",
            "quote_details": None,
            "subscription_details": {
                "metadata": {"nexudus_invoice_id": "42"},
                "subscription": "sub_1NexudusMember",
            },
        }
        self.invoice_payment = docs_example("invoice_payment")  # docs.stripe.com example
        self.invoice_payment.update(
            amount_paid=amount_minor,
            amount_requested=amount_minor,
            currency="eur",
            invoice=self.invoice["id"],
            livemode=True,
        )
        self.invoice_payment["payment"]["payment_intent"] = self.intent["id"]

    def event(self, event_type: str, obj: dict[str, Any]) -> dict[str, Any]:
        return samples.event(event_type, obj, api_version=self.api_version)

    def intent_succeeded(self) -> dict[str, Any]:
        return self.event("payment_intent.succeeded", self.intent)

    def invoice_paid(self) -> dict[str, Any]:
        return self.event("invoice.paid", self.invoice)

    def invoice_payment_paid(self) -> dict[str, Any]:
        return self.event("invoice_payment.paid", self.invoice_payment)

    def refund(self) -> dict[str, Any]:
        charge = fixture("charge")  # openapi fixtures3 charge
        charge.update(
            id="ch_BillingCharge0001",
            payment_intent=self.intent["id"],
            amount=self.intent["amount"],
            amount_refunded=self.intent["amount"],
            refunded=True,
            currency="eur",
        )
        return self.event("charge.refunded", charge)


def normalise(event: dict[str, Any]) -> PaymentEvent | Ignored:
    return normalise_event(event, invoice_metadata_key="nexudus_invoice_id")


class TestNormalised:
    @pytest.mark.parametrize("api_version", [BASIL, CLOVER])
    def test_invoice_reference_read_from_the_subscription_details(self, api_version: str) -> None:
        event = normalise(Payment(api_version).invoice_paid())
        assert isinstance(event, PaymentEvent)
        assert event.invoice.invoice_id == 42
        assert event.amount == Decimal("100.00")

    def test_invoice_payment_names_the_payment_intent_and_its_invoice(self) -> None:
        payment = Payment()
        event = normalise(payment.invoice_payment_paid())
        assert isinstance(event, PaymentEvent)
        assert event.token == payment.intent["id"]
        assert event.details["stripe_invoice"] == payment.invoice["id"]
        assert not event.invoice  # the job reads it from the invoice
        assert (event.amount, event.currency) == (Decimal("100.00"), "EUR")

    def test_invoice_payment_with_ids_at_the_top_level(self) -> None:
        # docs.stripe.com, api-version=2025-11-17.preview: a charge without PaymentIntent.
        obj = {**docs_example("invoice_payment_preview"), "livemode": True}
        event = normalise(samples.event("invoice_payment.paid", obj))
        assert isinstance(event, PaymentEvent)
        assert event.token == "ch_103Q0w2eZvKYlo2CbMCI3q1h"

    def test_unpaid_invoice_payment_records_nothing(self) -> None:
        # openapi fixtures3 invoice_payment: amount_paid null, as before it is paid.
        obj = {**fixture("invoice_payment"), "livemode": True, "invoice": "in_1"}
        obj["payment"]["payment_intent"] = "pi_1"
        assert isinstance(normalise(samples.event("invoice_payment.paid", obj)), Ignored)

    def test_invoice_payment_recorded_out_of_band_records_nothing(self) -> None:
        # docs.stripe.com InvoicePayment example, with payment.type "payment_record" (the
        # documented third type: a payment made outside Stripe).
        obj = {**docs_example("invoice_payment"), "livemode": True}
        obj["payment"] = {"type": "payment_record", "payment_record": "pr_1"}
        result = normalise(samples.event("invoice_payment.paid", obj))
        assert isinstance(result, Ignored)
        assert "out of band" in result.reason

    def test_billing_payment_intent_without_metadata_is_left_to_the_invoice(self) -> None:
        # Billing's PaymentIntent has no metadata (openapi fixtures3: "metadata": {}).
        result = normalise(Payment().intent_succeeded())
        assert isinstance(result, Ignored)
        assert "no Nexudus invoice reference" in result.reason

    def test_refund_names_the_token_the_payment_is_recorded_under(self) -> None:
        payment = Payment()
        refund = normalise(payment.refund())
        assert isinstance(refund, PaymentEvent)
        assert refund.token == payment.intent["id"]

    def test_2024_06_20_invoice_paid_out_of_band_keeps_its_own_id(self) -> None:
        # Before basil an invoice marked paid outside Stripe says so (paid_out_of_band) and
        # has no PaymentIntent: nothing else will name this payment, nothing to look up.
        intent = samples.payment_intent(invoice_id=42, amount=Decimal("100.00"))
        invoice = {**samples.invoice_paid(intent), "payment_intent": None, "charge": None}
        invoice["paid_out_of_band"] = True
        event = normalise(samples.event("invoice.paid", invoice))
        assert isinstance(event, PaymentEvent)
        assert event.token == invoice["id"]
        assert "stripe_invoice" not in event.details

    def test_2024_06_20_invoice_still_names_its_payment_intent(self) -> None:
        intent = samples.payment_intent(invoice_id=None, amount=Decimal("100.00"))
        invoice = {**samples.invoice_paid(intent), "metadata": {}}
        invoice["subscription_details"] = {"metadata": {"nexudus_invoice_id": "42"}}
        event = normalise(samples.event("invoice.paid", invoice))
        assert isinstance(event, PaymentEvent)
        assert (event.token, event.invoice.invoice_id) == (intent["id"], 42)


def tokens_of(state: SandboxState) -> list[str]:
    return [str(t["Token"]) for t in state.tokens.values()]


def job_of(queue: Queue, event: dict[str, Any]) -> Job:
    return queued_job(queue.connection, f"stripe:{event['id']}")


ORDERS = {
    "invoice first": ("invoice_paid", "invoice_payment_paid"),
    "invoice payment first": ("invoice_payment_paid", "invoice_paid"),
}


class TestWithoutApiKey:
    """The invoice's event and the InvoicePayment's event complete each other."""

    @pytest.mark.parametrize("order", ORDERS.values(), ids=ORDERS.keys())
    @pytest.mark.parametrize("api_version", [BASIL, CLOVER])
    def test_one_token_the_payment_intent_and_no_false_alarm(
        self,
        settings: Settings,
        sandbox_state: SandboxState,
        run_worker: RunWorker,
        queue: Queue,
        order: tuple[str, str],
        api_version: str,
    ) -> None:
        payment = Payment(api_version)
        events = [payment.intent_succeeded(), *(getattr(payment, name)() for name in order)]
        deliver(settings, "stripe", *events)
        run_worker()
        assert tokens_of(sandbox_state) == [payment.intent["id"]]
        assert sandbox_state.invoices[42]["PaidOn"] is not None
        assert len(queue.failed_job_registry) == 0

    def test_redelivered_in_separate_runs(
        self, settings: Settings, sandbox_state: SandboxState, run_worker: RunWorker, queue: Queue
    ) -> None:
        payment = Payment()
        deliver(settings, "stripe", payment.invoice_payment_paid())
        run_worker()  # alone: its invoice may be none of ours, so it writes nothing yet
        assert tokens_of(sandbox_state) == []
        deliver(settings, "stripe", payment.invoice_paid())
        run_worker()
        assert tokens_of(sandbox_state) == [payment.intent["id"]]
        assert len(queue.failed_job_registry) == 0

    def test_failed_invoice_payment_is_logged_without_waiting(
        self, settings: Settings, sandbox_state: SandboxState, run_worker: RunWorker, queue: Queue
    ) -> None:
        payment = Payment()
        event = payment.event("invoice.payment_failed", {**payment.invoice, "status": "open"})
        deliver(settings, "stripe", event)
        run_worker()
        assert finished(queue.connection, f"stripe:{event['id']}") != ""
        assert tokens_of(sandbox_state) == []

    def test_invoice_without_its_invoice_payment_fails_saying_what_to_do(
        self, settings: Settings, sandbox_state: SandboxState, run_worker: RunWorker, queue: Queue
    ) -> None:
        payment = Payment()
        event = payment.invoice_paid()
        deliver(settings, "stripe", event)
        run_worker()
        assert tokens_of(sandbox_state) == []  # never the in_… id
        failure = job_of(queue, event).meta["failure"]
        assert failure["error_class"] == "AwaitingInvoicePayment"
        assert "invoice_payment.paid" in failure["reason"]
        assert "STRIPE_API_KEY" in failure["reason"]


class SplitPayment(Payment):
    """Nexudus invoice 42 (100.00 EUR) paid through one Stripe invoice by two payments:
    pi_A 60.00 and pi_B 40.00, each with its own InvoicePayment (docs.stripe.com example,
    ``amount_paid`` its own share) and the Invoice's ``amount_paid`` the whole 100.00."""

    def __init__(self) -> None:
        super().__init__(BASIL, amount_minor=10000)
        self.shares = {"pi_basilSplitA": 6000, "pi_basilSplitB": 4000}
        self.payments = {}
        for n, (intent, share) in enumerate(self.shares.items()):
            payment = copy.deepcopy(self.invoice_payment)
            payment.update(id=f"inpay_Split{n}", amount_paid=share, amount_requested=share)
            payment["payment"]["payment_intent"] = intent
            self.payments[intent] = payment

    def paid_by(self, intent: str) -> dict[str, Any]:
        return self.event("invoice_payment.paid", self.payments[intent])


class TestSplitWithoutApiKey:
    """Issue 17, point 4: each InvoicePayment carries its own amount; the invoice's
    ``amount_paid`` is never recorded against one of them."""

    def test_invoice_paid_between_the_two_payments(
        self, settings: Settings, sandbox_state: SandboxState, run_worker: RunWorker, queue: Queue
    ) -> None:
        split = SplitPayment()
        a, b = split.shares
        # pi_A's InvoicePayment, then invoice.paid (100.00) before pi_B's InvoicePayment.
        deliver(settings, "stripe", split.paid_by(a), split.invoice_paid(), split.paid_by(b))
        run_worker()
        assert len(queue.failed_job_registry) == 0  # no false double payment
        assert sorted(tokens_of(sandbox_state)) == [a, b]
        assert sandbox_state.invoices[42]["PaidOn"] is not None
        notes = {str(t["Token"]): str(t["Notes"]) for t in sandbox_state.tokens.values()}
        assert "60.00" in notes[a]
        assert "100.00" not in notes[a].split("running total")[0]
        assert "40.00" in notes[b]

    def test_invoice_first_then_each_payment_records_itself(
        self, settings: Settings, sandbox_state: SandboxState, run_worker: RunWorker, queue: Queue
    ) -> None:
        split = SplitPayment()
        a, b = split.shares
        deliver(settings, "stripe", split.invoice_paid(), split.paid_by(a), split.paid_by(b))
        run_worker()
        assert len(queue.failed_job_registry) == 0
        assert sorted(tokens_of(sandbox_state)) == [a, b]
        assert sandbox_state.invoices[42]["PaidOn"] is not None

    def test_both_payments_first_refuses_and_says_what_to_replay(
        self,
        settings: Settings,
        sandbox_state: SandboxState,
        run_worker: RunWorker,
        queue: Queue,
        redis: Redis,
    ) -> None:
        split = SplitPayment()
        a, b = split.shares
        first, second, invoice = split.paid_by(a), split.paid_by(b), split.invoice_paid()
        deliver(settings, "stripe", first, second, invoice)
        run_worker()
        assert tokens_of(sandbox_state) == []  # never one of them at 100.00
        assert sandbox_state.invoices[42]["PaidOn"] is None
        failure = job_of(queue, invoice).meta["failure"]
        assert failure["error_class"] == "InvoicePaymentsUnresolved"
        assert f"stripe:{first['id']}" in failure["reason"]
        assert f"stripe:{second['id']}" in failure["reason"]
        # The runbook the reason gives: replay them; now the invoice is known.
        ops = Ops(settings, redis)
        for event in (first, second):
            assert "queued" in ops.replay_event(f"stripe:{event['id']}")
        run_worker()
        assert sorted(tokens_of(sandbox_state)) == [a, b]
        assert sandbox_state.invoices[42]["PaidOn"] is not None


class TestWithApiKey:
    """The job asks the Stripe API (the sandbox's stand-in, through the official SDK)."""

    @pytest.fixture
    def apply(
        self, settings: Settings, stripe_state: StripeState, queue: Queue
    ) -> Callable[..., None]:
        """Deliver events with STRIPE_API_KEY set and run a worker; ``known`` puts the
        payment's objects in the Stripe stand-in (an invoice paid out of band has none)."""
        api_settings = with_section(
            settings, StripeSettings, api_key=API_KEY, api_base=settings.nexudus_base_url
        )

        def run(payment: Payment, *events: dict[str, Any], known: bool = True) -> None:
            stripe_state.invoices[payment.invoice["id"]] = payment.invoice
            if known:
                charge = fixture("charge")  # openapi fixtures3 charge: a card payment
                charge.update(id="ch_BillingCharge0001", payment_intent=payment.intent["id"])
                stripe_state.charges[charge["id"]] = charge
                stripe_state.payment_intents[payment.intent["id"]] = {
                    **payment.intent,
                    "latest_charge": charge["id"],
                }
                stripe_state.invoice_payments[payment.invoice_payment["id"]] = (
                    payment.invoice_payment
                )
            deliver(api_settings, "stripe", *events)
            run_burst_worker(api_settings, queue.connection, queue)

        return run

    @pytest.mark.parametrize("api_version", [BASIL, CLOVER])
    def test_invoice_paid_alone_records_the_payment_intent(
        self,
        apply: Callable[..., None],
        sandbox_state: SandboxState,
        stripe_state: StripeState,
        api_version: str,
    ) -> None:
        payment = Payment(api_version)
        apply(payment, payment.invoice_paid())
        [token] = sandbox_state.tokens.values()
        assert token["Token"] == payment.intent["id"]
        assert token["RegularPaymentProvider"] == 2  # card, from the charge
        assert sandbox_state.invoices[42]["PaidOn"] is not None
        assert f"GET /v1/invoice_payments?invoice={payment.invoice['id']}&status=paid" in (
            stripe_state.requests
        )

    def test_invoice_payment_alone_reads_its_invoice(
        self, apply: Callable[..., None], sandbox_state: SandboxState
    ) -> None:
        payment = Payment()
        apply(payment, payment.invoice_payment_paid())
        assert tokens_of(sandbox_state) == [payment.intent["id"]]
        assert sandbox_state.invoices[42]["PaidOn"] is not None

    def test_every_event_of_the_payment_one_token(
        self, apply: Callable[..., None], sandbox_state: SandboxState, queue: Queue
    ) -> None:
        payment = Payment()
        apply(
            payment,
            payment.invoice_paid(),
            payment.intent_succeeded(),
            payment.invoice_payment_paid(),
        )
        assert tokens_of(sandbox_state) == [payment.intent["id"]]
        assert len(queue.failed_job_registry) == 0

    def test_invoice_paid_out_of_band_records_nothing(
        self, apply: Callable[..., None], sandbox_state: SandboxState, queue: Queue
    ) -> None:
        payment = Payment()
        apply(payment, payment.invoice_paid(), known=False)  # no InvoicePayment at Stripe
        assert tokens_of(sandbox_state) == []
        assert len(queue.failed_job_registry) == 0
