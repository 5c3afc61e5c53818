"""What Stripe's objects say about a payment, read the same way by the receiver (to make
the event) and by the job (to complete it from Stripe's API).

Which payment an object belongs to (its token), which Nexudus invoice its metadata
names, and which payment provider its payment method is recorded as.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from payhooks.domain.events import InvoiceRef, RegularPaymentProvider

METHOD_PROVIDERS: Mapping[str, RegularPaymentProvider] = {
    "us_bank_account": RegularPaymentProvider.STRIPE_ACH,
    "ach_debit": RegularPaymentProvider.STRIPE_ACH,
    "bacs_debit": RegularPaymentProvider.STRIPE_BACS,
}

INVOICE_NUMBER_KEY = "nexudus_invoice_number"
#: Where an event names the Stripe invoice its payment belongs to (for the job).
STRIPE_INVOICE_DETAIL = "stripe_invoice"


def provider_for_method(method_type: str) -> RegularPaymentProvider:
    """Card and every other Stripe method is recorded as plain Stripe (2)."""
    return METHOD_PROVIDERS.get(method_type, RegularPaymentProvider.STRIPE)


def id_of(value: Any) -> str | None:
    """Stripe fields hold an id, or the expanded object carrying it."""
    if isinstance(value, str) and value:
        return value
    if isinstance(value, dict) and isinstance(value.get("id"), str):
        return str(value["id"])
    return None


def token_of(obj: Mapping[str, Any]) -> str | None:
    """The payment an object belongs to: its PaymentIntent id, else its charge id."""
    object_type = obj.get("object")
    if object_type == "payment_intent":
        return id_of(obj.get("id"))
    if object_type == "charge":
        return id_of(obj.get("payment_intent")) or id_of(obj.get("id"))
    if object_type in ("refund", "dispute"):
        return id_of(obj.get("payment_intent")) or id_of(obj.get("charge"))
    if object_type == "checkout.session":
        return id_of(obj.get("payment_intent"))
    if object_type == "invoice":
        # From 2025-03-31.basil an Invoice names no payment: its id stands in until the
        # job finds the PaymentIntent (its InvoicePayment), so both events share a token.
        return id_of(obj.get("payment_intent")) or id_of(obj.get("charge")) or id_of(obj.get("id"))
    if object_type == "invoice_payment":
        # basil/clover nest the payment; later versions put its ids at the top level.
        payment = obj.get("payment")
        payment = payment if isinstance(payment, dict) else obj
        return id_of(payment.get("payment_intent")) or id_of(payment.get("charge"))
    return None


def is_invoice_stand_in(token: str) -> bool:
    """A token that is a Stripe invoice id, not yet its payment's (see token_of)."""
    return token.startswith("in_")


def _metadata_sources(obj: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The object's own metadata, then (invoices) the subscription's copy: under
    2025-03-31.basil and later in ``parent.subscription_details``, before it in
    ``subscription_details``."""
    sources: list[Any] = [obj.get("metadata")]
    if obj.get("object") == "invoice":
        parent = obj.get("parent")
        if isinstance(parent, dict) and isinstance(parent.get("subscription_details"), dict):
            sources.append(parent["subscription_details"].get("metadata"))
        if isinstance(obj.get("subscription_details"), dict):
            sources.append(obj["subscription_details"].get("metadata"))
    return [source for source in sources if isinstance(source, dict)]


def invoice_ref_of(obj: Mapping[str, Any], invoice_metadata_key: str) -> InvoiceRef:
    """The Nexudus invoice a Stripe object names in its metadata (or, for a Checkout
    Session, its client_reference_id), or an empty reference."""
    for metadata in _metadata_sources(obj):
        found = _invoice_ref(obj, metadata, invoice_metadata_key)
        if found:
            return found
    if obj.get("object") == "checkout.session":
        return _invoice_ref(obj, {}, invoice_metadata_key)
    return InvoiceRef()


def _invoice_ref(
    obj: Mapping[str, Any], metadata: Mapping[str, Any], invoice_metadata_key: str
) -> InvoiceRef:
    raw_id = metadata.get(invoice_metadata_key)
    if raw_id is None and obj.get("object") == "checkout.session":
        raw_id = obj.get("client_reference_id")
    if raw_id is not None:
        # Not an Id: someone put the invoice number where the id belongs; search by it.
        by_id = InvoiceRef.from_text(str(raw_id))
        if by_id:
            return by_id
    number = metadata.get(INVOICE_NUMBER_KEY)
    if isinstance(number, str) and number.strip():
        return InvoiceRef(number=number.strip())
    return InvoiceRef()
