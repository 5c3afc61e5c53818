"""Authorize.Net: JSON webhooks signed with HMAC-SHA512 of the raw body.

``X-ANET-Signature: sha512=<HEX>``, keyed with the Signature Key used as text, compared
case-insensitively and in constant time. A notification only names the transaction: the
job reads it back with the API (getTransactionDetails, step.py)
for the invoice number and the amount, and to confirm it, before recording money.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from datetime import UTC, datetime

from payhooks.domain.events import (
    Ignored,
    InvoiceRef,
    Normalised,
    PaymentEvent,
    PaymentKind,
    RegularPaymentProvider,
)
from payhooks.providers.authorizenet.settings import AuthorizeNetSettings
from payhooks.providers.kit.receiver_errors import InvalidSignature, MalformedPayload
from payhooks.providers.kit.receiving import SectionReceiver, load_json_object

PREFIX = "net.authorize.payment."
KINDS = {
    "authcapture.created": PaymentKind.PAID,
    "capture.created": PaymentKind.PAID,
    "priorAuthCapture.created": PaymentKind.PAID,
    "refund.created": PaymentKind.REFUNDED,
    "void.created": PaymentKind.REFUNDED,
    # A payment held for fraud review and then approved: the lookup confirms the capture.
    "fraud.approved": PaymentKind.PAID,
    "fraud.held": PaymentKind.FAILED,
    "fraud.declined": PaymentKind.FAILED,
}


def signature_of(key: str, body: bytes) -> str:
    return hmac.new(key.encode(), body, hashlib.sha512).hexdigest()


class AuthorizeNetWebhook(SectionReceiver[AuthorizeNetSettings]):
    SECTION = AuthorizeNetSettings
    name = "authorizenet"
    signature_headers: tuple[str, ...] = ("X-ANET-Signature",)

    def redact(self, body: bytes) -> bytes | None:
        return None  # notifications carry ids and amounts only

    def verify(self, body: bytes, headers: Mapping[str, str]) -> None:
        header = headers.get("X-ANET-Signature", "")
        if not header.isascii():
            # hmac.compare_digest raises TypeError on non-ASCII text: refuse it first.
            raise InvalidSignature("malformed X-ANET-Signature header: non-ASCII characters")
        scheme, _, given = header.partition("=")
        if scheme.lower() != "sha512" or not given:
            raise InvalidSignature("missing or malformed X-ANET-Signature header")
        given = given.strip().lower()
        if not any(
            hmac.compare_digest(signature_of(k, body), given) for k in self._settings.signature_keys
        ):
            raise InvalidSignature("signature does not match")

    def normalise(self, body: bytes, headers: Mapping[str, str]) -> list[Normalised]:
        notification = load_json_object(body)
        event_id = notification.get("notificationId")
        event_type = notification.get("eventType")
        payload = notification.get("payload")
        if not isinstance(event_id, str) or not isinstance(event_type, str):
            raise MalformedPayload("notification without notificationId or eventType")
        kind = KINDS.get(event_type.removeprefix(PREFIX)) if event_type.startswith(PREFIX) else None
        if kind is None:
            return [Ignored(event_id, event_type, "event type not handled")]
        if not isinstance(payload, dict) or not payload.get("id"):
            raise MalformedPayload("notification without payload.id")
        transaction_id = str(payload["id"])
        try:
            when = datetime.fromisoformat(str(notification.get("eventDate"))[:26].rstrip("Z"))
            when = when.replace(tzinfo=UTC)
        except ValueError:
            when = datetime.fromtimestamp(0, tz=UTC)
        return [
            PaymentEvent(
                provider=self.name,
                event_id=event_id,
                event_type=event_type,
                kind=kind,
                token=transaction_id,
                invoice=InvoiceRef(),  # order.invoiceNumber comes from the API, in the job
                amount=None,
                currency=None,
                occurred_at=when,
                object_id=transaction_id,
                regular_payment_provider=RegularPaymentProvider.AUTHORIZE_NET_SUBSCRIPTION,
                payment_method="card",
                details={"notification": event_id},
            )
        ]
