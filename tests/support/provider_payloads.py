"""Providers' payloads that tests outside a provider's own folder need too: Braintree's
SDK samples and our signed notifications, GoCardless's stand-in records, PayPal's
published samples."""

from __future__ import annotations

from decimal import Decimal
from typing import Any
from urllib.parse import urlencode

import braintree

from payhooks.providers.braintree import sample as braintree_samples
from payhooks.providers.gocardless import sample as gocardless_samples
from payhooks.providers.gocardless.stand_in import GoCardlessState, payment_record, refund_record
from tests.support.paths import FIXTURES
from tests.support.settings import BRAINTREE_PRIVATE, BRAINTREE_PUBLIC

PAYPAL_SAMPLES = FIXTURES / "paypal"  # PayPal's published samples


def braintree_sdk_sample(kind: str, subject_id: str) -> bytes:
    """A notification as the Braintree SDK's webhook_testing builds it, form-encoded."""
    gateway = braintree.BraintreeGateway(
        braintree.Configuration(
            braintree.Environment.Sandbox,
            "payhooks_test_merchant",
            BRAINTREE_PUBLIC,
            BRAINTREE_PRIVATE,
        )
    )
    sample = gateway.webhook_testing.sample_notification(kind, subject_id)
    return urlencode(
        {"bt_signature": sample["bt_signature"], "bt_payload": sample["bt_payload"]}
    ).encode()


def braintree_paid(
    kind: str = "transaction_settled",
    order_id: str = "42",
    amount: str = "100.00",
    public: str = BRAINTREE_PUBLIC,
    private: str = BRAINTREE_PRIVATE,
    transaction_id: str | None = None,
) -> bytes:
    """A signed notification of ours for a Braintree transaction of ``order_id``."""
    xml = braintree_samples.transaction_notification(
        kind, order_id=order_id, amount=Decimal(amount), transaction_id=transaction_id
    )
    return braintree_samples.signed(xml, public, private)[0]


def add_payment(
    state: GoCardlessState,
    invoice_id: int | None,
    amount_minor: int = 10000,
    currency: str = "EUR",
    **kw: Any,
) -> str:
    """A GoCardless payment registered with the stand-in; its id."""
    payment = gocardless_samples.payment_id()
    state.payments[payment] = payment_record(
        payment, amount_minor=amount_minor, currency=currency, invoice_id=invoice_id, **kw
    )
    return payment


def add_refund(
    state: GoCardlessState, refund: str, payment: str, amount_minor: int, currency: str = "EUR"
) -> None:
    state.refunds[refund] = refund_record(
        refund, payment_id=payment, amount_minor=amount_minor, currency=currency
    )
