"""Stripe sample events, shaped like Stripe's own fixtures, and their signatures."""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

import stripe

from payhooks.domain.money import to_minor_units
from payhooks.providers.kit.samples import DevSandbox, Sample, SampleRequest, exported_or

# Not a secret: the endpoint secret of `payhooks dev`, known to `send-test`.
DEV_WEBHOOK_SECRET = "whsec_payhooks_dev_only"  # noqa: S105


def _id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(12)}"


def payment_intent(
    *,
    invoice_id: int | None,
    amount: Decimal,
    currency: str = "EUR",
    method: str = "card",
    status: str = "succeeded",
    intent_id: str | None = None,
    metadata: dict[str, str] | None = None,
    single_method_type: bool = True,
) -> dict[str, Any]:
    minor = to_minor_units(amount, currency)
    meta = dict(metadata or {})
    if invoice_id is not None:
        meta.setdefault("nexudus_invoice_id", str(invoice_id))
    return {
        "id": intent_id or _id("pi"),
        "object": "payment_intent",
        "amount": minor,
        "amount_received": minor if status == "succeeded" else 0,
        "currency": currency.lower(),
        "customer": "cus_" + secrets.token_hex(7),
        "description": "Coworking membership",
        "latest_charge": _id("ch" if method == "card" else "py"),
        "livemode": False,
        "metadata": meta,
        "payment_method": _id("pm"),
        "payment_method_types": [method] if single_method_type else ["card", method],
        "status": status,
    }


def charge(intent: dict[str, Any], *, status: str = "succeeded") -> dict[str, Any]:
    method = intent["payment_method_types"][-1]
    details: dict[str, Any] = {"type": method, method: {}}
    if method == "card":
        details["card"] = {"brand": "visa", "last4": "4242", "exp_month": 12, "exp_year": 2030}
    return {
        "id": intent["latest_charge"],
        "object": "charge",
        "amount": intent["amount"],
        "amount_captured": intent["amount"] if status == "succeeded" else 0,
        "amount_refunded": 0,
        "currency": intent["currency"],
        "metadata": dict(intent["metadata"]),
        "paid": status == "succeeded",
        "payment_intent": intent["id"],
        "payment_method": intent["payment_method"],
        "payment_method_details": details,
        "status": status,
    }


def invoice_paid(intent: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": _id("in"),
        "object": "invoice",
        "amount_due": intent["amount"],
        "amount_paid": intent["amount"],
        "currency": intent["currency"],
        "metadata": dict(intent["metadata"]),
        "payment_intent": intent["id"],
        "charge": intent["latest_charge"],
        "status": "paid",
    }


def invoice_basil(
    intent: dict[str, Any], *, subscription_metadata: dict[str, str] | None = None
) -> dict[str, Any]:
    """An Invoice as API versions 2025-03-31.basil and later render it: no
    payment_intent or charge, the subscription's metadata under ``parent``."""
    return {
        "id": _id("in"),
        "object": "invoice",
        "amount_due": intent["amount"],
        "amount_paid": intent["amount"],
        "amount_remaining": 0,
        "currency": intent["currency"],
        "metadata": {},
        "parent": {
            "type": "subscription_details",
            "quote_details": None,
            "subscription_details": {
                "metadata": dict(subscription_metadata or intent["metadata"]),
                "subscription": _id("sub"),
            },
        },
        "status": "paid",
    }


def invoice_payment(
    invoice: dict[str, Any], intent: dict[str, Any], *, status: str = "paid"
) -> dict[str, Any]:
    """An InvoicePayment (basil and later), linking an invoice to its PaymentIntent."""
    return {
        "id": _id("inpay"),
        "object": "invoice_payment",
        "amount_paid": intent["amount"] if status == "paid" else None,
        "amount_requested": intent["amount"],
        "created": int(time.time()),
        "currency": intent["currency"],
        "invoice": invoice["id"],
        "is_default": True,
        "livemode": False,
        "payment": {"type": "payment_intent", "payment_intent": intent["id"]},
        "status": status,
        "status_transitions": {"canceled_at": None, "paid_at": int(time.time())},
    }


def checkout_session(intent: dict[str, Any], *, payment_status: str = "paid") -> dict[str, Any]:
    return {
        "id": _id("cs_test"),
        "object": "checkout.session",
        "amount_total": intent["amount"],
        "currency": intent["currency"],
        "client_reference_id": intent["metadata"].get("nexudus_invoice_id"),
        "metadata": {},
        "mode": "payment",
        "payment_intent": intent["id"],
        "payment_method_types": intent["payment_method_types"],
        "payment_status": payment_status,
        "status": "complete",
    }


def event(
    event_type: str,
    obj: dict[str, Any],
    *,
    event_id: str | None = None,
    livemode: bool = True,
    api_version: str = "2024-06-20",
) -> dict[str, Any]:
    """An event of a live endpoint by default; `send-test` sends test-mode ones
    (``livemode: false``, as Stripe's test keys and CLI do), which only an endpoint with
    STRIPE_ALLOW_TEST_MODE=true (`payhooks dev`) applies."""
    return {
        "id": event_id or _id("evt"),
        "object": "event",
        "api_version": api_version,
        "created": int(time.time()),
        "data": {"object": obj},
        "livemode": livemode,
        "pending_webhooks": 1,
        "request": {"id": None, "idempotency_key": None},
        "type": event_type,
    }


def paid_event(
    invoice_id: int | None = 42, amount: str = "100.00", **intent: Any
) -> dict[str, Any]:
    """The usual payment: ``payment_intent.succeeded`` for a new intent of ``amount`` EUR
    (``intent`` overrides ``payment_intent``'s other fields: currency, method, metadata)."""
    return event(
        "payment_intent.succeeded",
        payment_intent(invoice_id=invoice_id, amount=Decimal(amount), **intent),
    )


def signed(
    body: dict[str, Any] | bytes, secret: str, *, timestamp: int | None = None
) -> tuple[bytes, dict[str, str]]:
    """(raw body, headers) exactly as Stripe would send them."""
    raw = body if isinstance(body, bytes) else json.dumps(body, indent=2).encode()
    header = stripe.WebhookSignature.generate_signature_header(
        raw.decode(), secret, timestamp=timestamp
    )
    return raw, {"Stripe-Signature": header, "Content-Type": "application/json; charset=utf-8"}


def for_send_test(request: SampleRequest) -> Sample:
    intent = payment_intent(
        invoice_id=request.invoice,
        amount=request.amount,
        currency=request.currency,
        method=request.method,
    )
    sent = event("payment_intent.succeeded", intent, livemode=False)
    return Sample(
        f"{sent['type']} {sent['id']}, {request.amount} {request.currency.upper()}, "
        f"invoice {request.invoice}",
        *signed(sent, request.secret("STRIPE_WEBHOOK_SECRETS", DEV_WEBHOOK_SECRET)),
    )


def dev_environment(sandbox: DevSandbox, env: Mapping[str, str]) -> dict[str, str]:
    return {
        "STRIPE_WEBHOOK_SECRETS": exported_or(env, "STRIPE_WEBHOOK_SECRETS", DEV_WEBHOOK_SECRET),
        "STRIPE_ALLOW_TEST_MODE": "true",  # send-test's Stripe events are test mode
    }
