"""Spreedly's callbacks: ``POST /webhooks/spreedly``, XML ``<transactions>``, each
transaction verified on its own signed block with every configured signing secret.

A callback any transaction of which is unsigned, signed with an algorithm outside the
allow-list, signs too few fields, repeats a signed element or does not match is refused
whole (400): nothing of it is queued. A verified transaction becomes an event keyed by its
token and state (a later state of the same transaction is a new event); its kind and money
are the API's, read by the job. Authorizations, verifications, voids and payment-method
transactions record nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from xml.etree.ElementTree import Element, SubElement, tostring

from payhooks.domain.events import (
    Ignored,
    InvoiceRef,
    Normalised,
    PaymentEvent,
    PaymentKind,
    RegularPaymentProvider,
)
from payhooks.providers.kit.receiver_errors import InvalidSignature, MalformedPayload
from payhooks.providers.kit.receiving import SENSITIVE_FIELDS, SectionReceiver
from payhooks.providers.spreedly.formats import (
    CREDITS,
    NAME,
    PURCHASES,
    CallbackRefused,
    callback_time,
    parse_callback,
    verify_transactions,
)
from payhooks.providers.spreedly.settings import SpreedlySettings

XML = frozenset({"application/xml", "text/xml"})
#: Card details a callback's payment method may carry (Spreedly's names).
CARD_FIELDS = SENSITIVE_FIELDS | {
    "last_four_digits",
    "first_six_digits",
    "number",
    "verification_value",
    "fingerprint",
    "month",
    "year",
}


class SpreedlyWebhook(SectionReceiver[SpreedlySettings]):
    SECTION = SpreedlySettings
    name = NAME
    content_types = XML

    def redact(self, body: bytes) -> bytes | None:
        if b"<payment_method" not in body:
            return None
        try:
            transactions = parse_callback(body)
        except CallbackRefused:
            return None
        found = False
        for transaction in transactions:
            for element in transaction.iter():
                if element.tag.rsplit("}", 1)[-1] in CARD_FIELDS and element.text:
                    element.text, found = "[redacted]", True
        if not found:
            return None
        root = Element("transactions")
        for transaction in transactions:
            SubElement(root, "transaction").extend(list(transaction))
        return tostring(root)

    def verify(self, body: bytes, headers: Mapping[str, str]) -> None:
        try:
            verify_transactions(body, self._settings.signing_secrets)
        except CallbackRefused as exc:
            raise InvalidSignature(f"Spreedly callback refused: {exc}") from None

    def normalise(self, body: bytes, headers: Mapping[str, str]) -> list[Normalised]:
        try:
            transactions = verify_transactions(body, self._settings.signing_secrets)
        except CallbackRefused as exc:
            raise MalformedPayload(f"Spreedly callback: {exc}") from None
        return [transaction_event(signed.values, self._settings) for signed in transactions]


def transaction_event(values: Mapping[str, str], settings: SpreedlySettings) -> Normalised:
    """One transaction's event, keyed by its token and state, from its fields' text: a
    callback's signed fields, or the same fields of Spreedly's transactions list (the
    lister). Its kind is a hint: the job reads kind, money and invoice from the API."""
    token, state = values["token"], values["state"]
    kind_of_type = values["transaction_type"]
    event_id = f"{token}:{state}"
    event_type = f"{kind_of_type}.{state}"
    if kind_of_type not in PURCHASES | CREDITS:
        return Ignored(event_id, event_type, "moves no money payhooks records")
    if values.get("on_test_gateway") == "true" and not settings.allow_test_gateway:
        return Ignored(event_id, event_type, "on Spreedly's test gateway")
    return PaymentEvent(
        provider=NAME,
        event_id=event_id,
        event_type=event_type,
        kind=PaymentKind.REFUNDED if kind_of_type in CREDITS else PaymentKind.PENDING,
        token=token,
        invoice=InvoiceRef(),
        amount=None,
        currency=None,
        occurred_at=callback_time(values.get("updated_at")),
        object_id=token,
        regular_payment_provider=RegularPaymentProvider(settings.provider_value),
        details={"transaction_type": kind_of_type},
    )
