"""Stripe: signature check with the official SDK (``WebhookSignature.verify_header``, not
``construct_event``: the body is parsed once, by us), and a pure event normaliser.

Card payments become provider 2 (Stripe), ACH debits 11 (StripeACH) and BACS debits
13 (StripeBACS). Every paid event of one payment (payment_intent.succeeded,
charge.succeeded, invoice.paid, invoice_payment.paid, checkout.session.completed)
resolves to the same token: the PaymentIntent id, or the charge id for a charge made
without one.

Since API version 2025-03-31.basil an Invoice names neither its PaymentIntent nor its
charge, and an InvoicePayment (``invoice_payment.paid``) names the PaymentIntent and the
Stripe invoice id but not the invoice's metadata. Neither event alone holds both the
token and the Nexudus invoice, so both become events that the job completes
(step.py): the invoice's event keeps the ``in_…`` id as a stand-in
token, the InvoicePayment's event has no invoice reference yet, and both carry the
Stripe invoice id in ``details["stripe_invoice"]``. What both sides read from Stripe's
objects (tokens, invoice references, payment methods) is in
formats.py.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from prometheus_client import Counter

# Bound once: ``stripe.WebhookSignature`` is a lazy module attribute that runs
# import_module on every access, once per webhook.
from stripe import SignatureVerificationError, WebhookSignature

from payhooks.domain.events import (
    REFUNDED_TOTAL,
    REFUNDS_OF,
    Ignored,
    Normalised,
    PaymentEvent,
    PaymentKind,
    utc_from_timestamp,
)
from payhooks.domain.money import from_minor_units
from payhooks.providers.kit.receiver_errors import InvalidSignature, MalformedPayload
from payhooks.providers.kit.receiving import SectionReceiver, load_json_object, redact_json
from payhooks.providers.stripe.formats import (
    STRIPE_INVOICE_DETAIL,
    id_of,
    invoice_ref_of,
    provider_for_method,
    token_of,
)
from payhooks.providers.stripe.settings import StripeSettings

SCHEME = "v1"

PAID = frozenset(
    {
        "payment_intent.succeeded",
        "charge.succeeded",
        "charge.captured",
        "invoice.paid",
        "invoice.payment_succeeded",
        "invoice_payment.paid",
        "checkout.session.completed",
        "checkout.session.async_payment_succeeded",
    }
)
PENDING = frozenset({"payment_intent.processing", "charge.pending"})
FAILED = frozenset(
    {
        "payment_intent.payment_failed",
        "payment_intent.canceled",
        "charge.failed",
        "invoice.payment_failed",
        "checkout.session.async_payment_failed",
    }
)
REFUNDED = frozenset(
    {
        "charge.refunded",
        "charge.dispute.created",
        "charge.dispute.funds_withdrawn",
        "charge.dispute.closed",
    }
)
#: A refund's own events: it counts unless it failed or was canceled (then the money
#: never left, or came back).
REFUND_OBJECT_EVENTS = frozenset(
    {"refund.created", "refund.updated", "refund.failed", "charge.refund.updated"}
)
REFUND_UNDONE = frozenset({"failed", "canceled"})

_NO_PAYMENT = {
    "": "no PaymentIntent or charge on this object",
    "checkout.session": "no PaymentIntent on this Checkout Session (subscription mode:"
    " its invoice.paid and invoice_payment.paid events record the payment)",
    "invoice_payment": "this InvoicePayment names no PaymentIntent or charge (a payment"
    " recorded out of band)",
}

#: Served at GET /metrics with the receiver's own (prometheus_client's default registry).
TEST_MODE_REFUSED = Counter(
    "payhooks_test_mode_events_total",
    "Verified test-mode events refused (acknowledged, not queued) by provider.",
    ["provider"],
)

TEST_MODE_REASON = (
    "test-mode event (livemode false) refused: set STRIPE_ALLOW_TEST_MODE=true"
    " only on a development or test endpoint"
)


class StripeWebhook(SectionReceiver[StripeSettings]):
    SECTION = StripeSettings
    name = "stripe"
    signature_headers: tuple[str, ...] = ("Stripe-Signature",)

    def __init__(self, section: StripeSettings, invoice_metadata_key: str) -> None:
        super().__init__(section, invoice_metadata_key)
        self._test_mode_refused = TEST_MODE_REFUSED.labels(self.name)

    def redact(self, body: bytes) -> bytes | None:
        return redact_json(body)

    def verify(self, body: bytes, headers: Mapping[str, str]) -> None:
        header = headers.get("Stripe-Signature")
        if not header:
            raise InvalidSignature("missing Stripe-Signature header")
        if not header.isascii():
            # The SDK's constant-time comparison raises TypeError on non-ASCII text.
            raise InvalidSignature("malformed Stripe-Signature header: non-ASCII characters")
        try:
            payload = body.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidSignature(
                "body is not UTF-8, so it cannot carry a valid signature"
            ) from None
        failure = "signature does not match"
        # Several secrets are valid at once while an endpoint secret is rolled.
        for secret in self._settings.webhook_secrets:
            try:
                WebhookSignature.verify_header(
                    payload, header, secret, self._settings.tolerance_seconds
                )
                return
            except SignatureVerificationError as exc:
                message = str(exc)
                if "tolerance" in message:
                    failure = "timestamp outside the tolerance window"
                elif "Unable to extract" in message or "No signatures found with" in message:
                    raise InvalidSignature("malformed Stripe-Signature header") from None
        raise InvalidSignature(failure)

    def normalise(self, body: bytes, headers: Mapping[str, str]) -> list[Normalised]:
        event = load_json_object(body)
        result = normalise_event(
            event,
            invoice_metadata_key=self._invoice_metadata_key,
            allow_test_mode=self._settings.allow_test_mode,
        )
        if isinstance(result, Ignored) and result.reason == TEST_MODE_REASON:
            self._test_mode_refused.inc()
        return [result]


def normalise_event(
    event: Mapping[str, Any], *, invoice_metadata_key: str, allow_test_mode: bool = False
) -> Normalised:
    """Map one verified Stripe event to a payment event, or say why it is ignored."""
    event_id = event.get("id")
    event_type = event.get("type")
    data = event.get("data")
    if not isinstance(event_id, str) or not isinstance(event_type, str):
        raise MalformedPayload("Stripe event without id or type")
    obj = data.get("object") if isinstance(data, dict) else None
    if not isinstance(obj, dict):
        raise MalformedPayload("Stripe event without data.object")
    # Test-mode payments move no money; only an event Stripe marks live is applied.
    if event.get("livemode") is not True and not allow_test_mode:
        return Ignored(event_id, event_type, TEST_MODE_REASON)

    kind = _kind(event_type, obj)
    if kind is None:
        return Ignored(event_id, event_type, "event type not handled")

    token = token_of(obj)
    if token is None and kind in (PaymentKind.REFUNDED, PaymentKind.REINSTATED):
        # A refund or dispute always names its charge or PaymentIntent; one that does
        # not moved money we cannot place: kept for a person, never dropped.
        raise MalformedPayload(f"Stripe {event_type} names no PaymentIntent or charge")
    if token is None:
        return Ignored(
            event_id, event_type, _NO_PAYMENT.get(str(obj.get("object")), _NO_PAYMENT[""])
        )
    invoice = invoice_ref_of(obj, invoice_metadata_key)
    stripe_invoice = _stripe_invoice_of(obj)
    # An InvoicePayment never carries metadata: the job reads its invoice's.
    if (
        not invoice
        and kind in (PaymentKind.PAID, PaymentKind.PENDING)
        and not _completed_by_job(obj, stripe_invoice)
    ):
        return Ignored(event_id, event_type, "no Nexudus invoice reference in metadata")

    amount_minor, currency = _amount(obj, event_type, kind)
    if kind is PaymentKind.PAID and (amount_minor is None or currency is None):
        return Ignored(event_id, event_type, "paid event without money received")
    method = _method_type(obj)
    created = event.get("created")
    if not isinstance(created, int | float) or isinstance(created, bool):
        raise MalformedPayload("Stripe event without its created time")
    details = {"livemode": str(bool(event.get("livemode"))).lower()}
    if stripe_invoice is not None:
        details[STRIPE_INVOICE_DETAIL] = stripe_invoice
    details.update(_refund_details(event_type, obj))
    return PaymentEvent(
        provider="stripe",
        event_id=event_id,
        event_type=event_type,
        kind=kind,
        token=token,
        invoice=invoice,
        amount=None
        if amount_minor is None or currency is None
        else from_minor_units(amount_minor, currency),
        currency=None if currency is None else currency.upper(),
        occurred_at=utc_from_timestamp(created),
        object_id=str(obj.get("id", "")),
        regular_payment_provider=None if method is None else provider_for_method(method),
        payment_method=method,
        details=details,
    )


def _kind(event_type: str, obj: Mapping[str, Any]) -> PaymentKind | None:
    if event_type == "checkout.session.completed":
        # An async method (ACH, BACS) completes the session before the money moves;
        # async_payment_succeeded follows when it does.
        return PaymentKind.PAID if obj.get("payment_status") == "paid" else PaymentKind.PENDING
    if obj.get("object") == "dispute" and str(obj.get("status", "")).startswith("warning_"):
        # An inquiry (retrieval request, early fraud warning): Stripe withdraws nothing
        # unless it becomes a chargeback, which charge.dispute.funds_withdrawn then says.
        return None
    if event_type == "charge.dispute.closed":
        return {"lost": PaymentKind.REFUNDED, "won": PaymentKind.REINSTATED}.get(
            str(obj.get("status"))
        )
    if event_type == "charge.dispute.funds_reinstated":
        return PaymentKind.REINSTATED
    if event_type in REFUND_OBJECT_EVENTS:
        undone = event_type == "refund.failed" or obj.get("status") in REFUND_UNDONE
        return PaymentKind.REINSTATED if undone else PaymentKind.REFUNDED
    if event_type == "charge.succeeded" and obj.get("captured") is False:
        # Authorised with manual capture: no money has moved until charge.captured.
        return PaymentKind.PENDING
    if event_type in PAID:
        return PaymentKind.PAID
    if event_type in PENDING:
        return PaymentKind.PENDING
    if event_type in FAILED:
        return PaymentKind.FAILED
    if event_type in REFUNDED:
        return PaymentKind.REFUNDED
    return None


def _refund_details(event_type: str, obj: Mapping[str, Any]) -> dict[str, str]:
    """A refund is stated by the refund's own events (its amount) and by
    ``charge.refunded`` (all refunded of the charge so far): both name the charge, so
    that they combine as the larger of the two, never as their sum."""
    if event_type == "charge.refunded":
        charge = id_of(obj.get("id"))
        return {} if charge is None else {REFUNDS_OF: charge, REFUNDED_TOTAL: "true"}
    if obj.get("object") == "refund":
        charge = id_of(obj.get("charge"))
        return {} if charge is None else {REFUNDS_OF: charge}
    return {}


def _stripe_invoice_of(obj: Mapping[str, Any]) -> str | None:
    """The Stripe invoice whose payment the job must find, if any."""
    object_type = obj.get("object")
    if object_type == "invoice":
        # Marked paid out of band (before basil): no Stripe payment exists to find, and
        # no other event of it will come; the invoice id is its only name.
        return None if obj.get("paid_out_of_band") is True else id_of(obj.get("id"))
    if object_type == "invoice_payment":
        return id_of(obj.get("invoice"))
    return None


def _completed_by_job(obj: Mapping[str, Any], stripe_invoice: str | None) -> bool:
    """An InvoicePayment names its invoice only by Stripe id: the job finds the
    Nexudus reference in that invoice's metadata (or in its invoice.paid event)."""
    return obj.get("object") == "invoice_payment" and stripe_invoice is not None


def _amount(
    obj: Mapping[str, Any], event_type: str, kind: PaymentKind
) -> tuple[int | None, str | None]:
    """The money that moved, in minor units. For a paid event only what was actually
    received counts (never the amount asked for), so the amount guard sees the truth."""
    object_type = obj.get("object")
    currency = obj.get("currency")
    if currency is not None and not isinstance(currency, str):
        # A field of the wrong type is not "no money": kept as unprocessed, never ignored.
        raise MalformedPayload("Stripe currency is not a string")
    currency = currency or None
    paid = kind is PaymentKind.PAID
    if object_type == "payment_intent":
        name = "amount_received" if paid else "amount"
    elif object_type == "charge":
        if event_type == "charge.refunded":
            name = "amount_refunded"
        else:
            name = "amount_captured" if paid else "amount"
    elif object_type == "invoice":
        name = "amount_paid" if paid else "amount_due"
    elif object_type == "invoice_payment":
        name = "amount_paid" if paid else "amount_requested"
    elif object_type == "checkout.session":
        name = "amount_total"
    else:
        name = "amount"
    value = obj.get(name)
    if value is None:
        return None, currency
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise MalformedPayload(f"Stripe {name} is not a whole number of minor units")
    return (value or None), currency


def _method_type(obj: Mapping[str, Any]) -> str | None:
    details = obj.get("payment_method_details")
    if isinstance(details, dict) and isinstance(details.get("type"), str):
        return str(details["type"])
    latest = obj.get("latest_charge")
    if isinstance(latest, dict):
        return _method_type(latest)
    charges = obj.get("charges")
    if isinstance(charges, dict) and isinstance(charges.get("data"), list) and charges["data"]:
        first = charges["data"][0]
        if isinstance(first, dict):
            return _method_type(first)
    types = obj.get("payment_method_types")
    # With dynamic payment methods the list holds every allowed type, so only a
    # single entry tells which one was used.
    if isinstance(types, list) and len(types) == 1 and isinstance(types[0], str):
        return types[0]
    return None
