"""The pure Stripe normaliser: event type, payment method, token, invoice and amount."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from payhooks.domain.events import Ignored, PaymentEvent, PaymentKind, RegularPaymentProvider
from payhooks.providers.kit.receiver_errors import MalformedPayload
from payhooks.providers.stripe import sample as samples
from payhooks.providers.stripe.receiver import normalise_event


def normalise(event: dict) -> PaymentEvent | Ignored:  # type: ignore[type-arg]
    return normalise_event(event, invoice_metadata_key="nexudus_invoice_id")


def paid(event: dict) -> PaymentEvent:  # type: ignore[type-arg]
    result = normalise(event)
    assert isinstance(result, PaymentEvent), result
    return result


@pytest.mark.parametrize(
    ("method", "provider"),
    [
        ("card", RegularPaymentProvider.STRIPE),
        ("us_bank_account", RegularPaymentProvider.STRIPE_ACH),
        ("ach_debit", RegularPaymentProvider.STRIPE_ACH),
        ("bacs_debit", RegularPaymentProvider.STRIPE_BACS),
        ("sepa_debit", RegularPaymentProvider.STRIPE),
    ],
)
class TestPaymentMethod:
    def test_charge_uses_payment_method_details(self, method: str, provider: int) -> None:
        intent = samples.payment_intent(invoice_id=42, amount=Decimal(10), method=method)
        event = paid(samples.event("charge.succeeded", samples.charge(intent)))
        assert event.regular_payment_provider == provider
        assert event.payment_method == method

    def test_intent_with_single_method_type(self, method: str, provider: int) -> None:
        intent = samples.payment_intent(invoice_id=42, amount=Decimal(10), method=method)
        event = paid(samples.event("payment_intent.succeeded", intent))
        assert event.regular_payment_provider == provider

    def test_intent_with_several_types_is_left_to_the_job(self, method: str, provider: int) -> None:
        intent = samples.payment_intent(
            invoice_id=42, amount=Decimal(10), method=method, single_method_type=False
        )
        event = paid(samples.event("payment_intent.succeeded", intent))
        assert event.regular_payment_provider is None


@pytest.mark.parametrize(
    ("event_type", "kind"),
    [
        ("payment_intent.succeeded", PaymentKind.PAID),
        ("charge.succeeded", PaymentKind.PAID),
        ("invoice.paid", PaymentKind.PAID),
        ("checkout.session.completed", PaymentKind.PAID),
        ("checkout.session.async_payment_succeeded", PaymentKind.PAID),
        ("payment_intent.processing", PaymentKind.PENDING),
        ("charge.pending", PaymentKind.PENDING),
        ("payment_intent.payment_failed", PaymentKind.FAILED),
        ("charge.failed", PaymentKind.FAILED),
        ("invoice.payment_failed", PaymentKind.FAILED),
        ("checkout.session.async_payment_failed", PaymentKind.FAILED),
        ("charge.refunded", PaymentKind.REFUNDED),
    ],
)
def test_event_type_maps_to_kind(event_type: str, kind: PaymentKind) -> None:
    intent = samples.payment_intent(invoice_id=42, amount=Decimal("25.00"))
    family = event_type.split(".")[0]
    obj = {
        "payment_intent": intent,
        "charge": {**samples.charge(intent), "amount_refunded": intent["amount"]},
        "invoice": samples.invoice_paid(intent),
        "checkout": samples.checkout_session(intent),
    }[family]
    result = paid(samples.event(event_type, obj))
    assert result.kind is kind


def test_every_paid_event_of_one_payment_has_the_same_token() -> None:
    intent = samples.payment_intent(invoice_id=42, amount=Decimal(100))
    events = [
        samples.event("payment_intent.succeeded", intent),
        samples.event("charge.succeeded", samples.charge(intent)),
        samples.event("invoice.paid", samples.invoice_paid(intent)),
        samples.event("checkout.session.completed", samples.checkout_session(intent)),
    ]
    results = [paid(e) for e in events]
    assert {r.token for r in results} == {intent["id"]}
    assert {r.invoice.invoice_id for r in results} == {42}
    assert {r.amount for r in results} == {Decimal("100.00")}


def test_charge_without_payment_intent_uses_the_charge_id() -> None:
    intent = samples.payment_intent(invoice_id=42, amount=Decimal(5))
    charge = {**samples.charge(intent), "payment_intent": None}
    assert paid(samples.event("charge.succeeded", charge)).token == charge["id"]


def test_unpaid_checkout_session_is_pending() -> None:
    intent = samples.payment_intent(invoice_id=42, amount=Decimal(5), method="bacs_debit")
    session = samples.checkout_session(intent, payment_status="unpaid")
    assert paid(samples.event("checkout.session.completed", session)).kind is PaymentKind.PENDING


def test_subscription_checkout_without_payment_intent_is_ignored() -> None:
    intent = samples.payment_intent(invoice_id=42, amount=Decimal(5))
    session = {**samples.checkout_session(intent), "payment_intent": None, "mode": "subscription"}
    result = normalise(samples.event("checkout.session.completed", session))
    assert isinstance(result, Ignored)
    assert "invoice.paid" in result.reason


def test_dispute_won_is_reinstated_and_lost_is_refunded() -> None:
    dispute = {
        "id": "dp_1",
        "object": "dispute",
        "charge": "ch_1",
        "payment_intent": "pi_1",
        "amount": 500,
        "currency": "eur",
        "metadata": {},
        "status": "won",
    }
    won = paid(samples.event("charge.dispute.closed", dispute))
    assert (won.kind, won.token, won.object_id) == (PaymentKind.REINSTATED, "pi_1", "dp_1")
    lost = paid(samples.event("charge.dispute.closed", {**dispute, "status": "lost"}))
    assert lost.kind is PaymentKind.REFUNDED
    assert lost.token == "pi_1"


def test_unknown_event_type_is_ignored() -> None:
    result = normalise(samples.event("customer.created", {"id": "cus_1", "object": "customer"}))
    assert isinstance(result, Ignored)
    assert result.event_type == "customer.created"


class TestInvoiceReference:
    def test_metadata_id(self) -> None:
        intent = samples.payment_intent(invoice_id=77, amount=Decimal(1))
        assert paid(samples.event("payment_intent.succeeded", intent)).invoice.invoice_id == 77

    def test_configured_metadata_key(self) -> None:
        intent = samples.payment_intent(invoice_id=None, amount=Decimal(1), metadata={"inv": "9"})
        event = normalise_event(
            samples.event("payment_intent.succeeded", intent), invoice_metadata_key="inv"
        )
        assert isinstance(event, PaymentEvent)
        assert event.invoice.invoice_id == 9

    def test_checkout_client_reference_id(self) -> None:
        intent = samples.payment_intent(invoice_id=None, amount=Decimal(1))
        session = {**samples.checkout_session(intent), "client_reference_id": "123"}
        assert paid(samples.event("checkout.session.completed", session)).invoice.invoice_id == 123

    def test_invoice_number(self) -> None:
        intent = samples.payment_intent(
            invoice_id=None, amount=Decimal(1), metadata={"nexudus_invoice_number": "INV-7"}
        )
        ref = paid(samples.event("payment_intent.succeeded", intent)).invoice
        assert (ref.invoice_id, ref.number) == (None, "INV-7")

    @pytest.mark.parametrize("typed", ["\u00b2", "1234567890123456789", " INV 8 "])
    def test_text_that_is_not_an_id_is_searched_as_a_number(self, typed: str) -> None:
        # "²" passes str.isdigit but int() rejects it: this once crashed the webhook.
        intent = samples.payment_intent(invoice_id=None, amount=Decimal(1), metadata={"inv": typed})
        event = normalise_event(
            samples.event("payment_intent.succeeded", intent), invoice_metadata_key="inv"
        )
        assert isinstance(event, PaymentEvent)
        assert (event.invoice.invoice_id, event.invoice.number) == (None, typed.strip())

    def test_paid_without_reference_is_ignored(self) -> None:
        intent = samples.payment_intent(invoice_id=None, amount=Decimal(1))
        result = normalise(samples.event("payment_intent.succeeded", intent))
        assert isinstance(result, Ignored)
        assert "invoice reference" in result.reason


@pytest.mark.parametrize(
    ("minor", "currency", "major"),
    [
        (1050, "eur", Decimal("10.50")),
        (1050, "jpy", Decimal(1050)),
        (1050, "kwd", Decimal("1.050")),
    ],
)
def test_amount_in_major_units(minor: int, currency: str, major: Decimal) -> None:
    intent = samples.payment_intent(invoice_id=1, amount=Decimal(0), currency=currency)
    intent.update(amount=minor, amount_received=minor)
    event = paid(samples.event("payment_intent.succeeded", intent))
    assert event.amount == major
    assert event.currency == currency.upper()


def test_event_round_trips_through_json() -> None:
    intent = samples.payment_intent(invoice_id=42, amount=Decimal("12.34"), method="bacs_debit")
    event = paid(samples.event("payment_intent.succeeded", intent))
    assert PaymentEvent.from_json(event.to_json()) == event


@pytest.mark.parametrize(
    "body", [{"type": "charge.succeeded"}, {"id": "evt_1", "type": "x", "data": {}}, {"id": 1}]
)
def test_malformed_event_is_rejected(body: dict) -> None:  # type: ignore[type-arg]
    with pytest.raises(MalformedPayload):
        normalise(json.loads(json.dumps(body)))


class TestMoneyReceived:
    def test_authorised_but_not_captured_charge_is_pending(self) -> None:
        intent = samples.payment_intent(invoice_id=42, amount=Decimal(100))
        charge = {**samples.charge(intent), "captured": False, "amount_captured": 0}
        assert paid(samples.event("charge.succeeded", charge)).kind is PaymentKind.PENDING

    def test_captured_charge_is_paid_with_the_captured_amount(self) -> None:
        intent = samples.payment_intent(invoice_id=42, amount=Decimal(100))
        charge = {**samples.charge(intent), "captured": True, "amount_captured": 6000}
        event = paid(samples.event("charge.captured", charge))
        assert (event.kind, event.amount) == (PaymentKind.PAID, Decimal("60.00"))

    def test_intent_amount_asked_for_is_not_money_received(self) -> None:
        intent = samples.payment_intent(invoice_id=42, amount=Decimal(100))
        intent["amount_received"] = 0
        result = normalise(samples.event("payment_intent.succeeded", intent))
        assert isinstance(result, Ignored)
        assert "without money received" in result.reason

    def test_invoice_paid_without_payment_is_ignored(self) -> None:
        intent = samples.payment_intent(invoice_id=42, amount=Decimal(100))
        invoice = {**samples.invoice_paid(intent), "amount_paid": 0}
        assert isinstance(normalise(samples.event("invoice.paid", invoice)), Ignored)


def test_event_without_created_time_is_rejected() -> None:
    intent = samples.payment_intent(invoice_id=42, amount=Decimal(100))
    event = samples.event("payment_intent.succeeded", intent)
    del event["created"]
    with pytest.raises(MalformedPayload):
        normalise(event)
