"""LiqPay: form-encoded callbacks signed with base64(hash(private_key + data + private_key)).

The hash is SHA-1 (the documented scheme) or, in LiqPay's newer scheme, SHA3-256; both
are accepted. LiqPay publishes no Python SDK that verifies, so the check is done here,
over the ``data`` field exactly as it was sent, compared in constant time against every
configured private key (for a key change) and both hashes, without stopping at the first
match. ``data`` is base64 of the payment's JSON.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qs, urlencode

from payhooks.domain.events import (
    Ignored,
    InvoiceRef,
    Normalised,
    PaymentEvent,
    PaymentKind,
    RegularPaymentProvider,
)
from payhooks.providers.kit.receiver_errors import InvalidSignature, MalformedPayload
from payhooks.providers.kit.receiving import FORM, SectionReceiver
from payhooks.providers.liqpay.settings import LiqPaySettings

FAILED = frozenset({"failure", "error"})
IGNORED = frozenset({"subscribed", "unsubscribed"})


#: The signature hashes LiqPay uses: SHA-1 (documented) and SHA3-256 (the newer scheme).
SCHEMES = ("sha1", "sha3_256")


def signature_of(private_key: str, data: str, scheme: str = "sha1") -> str:
    """base64(hash(private_key + data + private_key)), ``scheme`` one of SCHEMES."""
    digest = hashlib.new(scheme, (private_key + data + private_key).encode()).digest()
    return base64.b64encode(digest).decode()


def signature_matches(keys: tuple[str, ...], data: str, signature: str) -> bool:
    """Every key and scheme is compared, constant-time, whatever matched before."""
    matched = False
    for key in keys:
        for scheme in SCHEMES:
            matched |= hmac.compare_digest(signature_of(key, data, scheme), signature)
    return matched


def _fields(body: bytes) -> dict[str, str]:
    try:
        parsed = parse_qs(body.decode("utf-8"), keep_blank_values=True, strict_parsing=True)
    except (UnicodeDecodeError, ValueError):
        raise MalformedPayload("body is not a form") from None
    return {name: values[0] for name, values in parsed.items()}


class LiqPayWebhook(SectionReceiver[LiqPaySettings]):
    SECTION = LiqPaySettings
    name = "liqpay"
    content_types = FORM
    # the signature is a form field (no signature header)

    def redact(self, body: bytes) -> bytes | None:
        """The card mask and card holder's details removed from ``data``."""
        fields = _fields(body)
        try:
            payment = json.loads(base64.b64decode(fields.get("data", ""), validate=True))
        except (binascii.Error, ValueError):
            return None
        if not isinstance(payment, dict):
            return None
        sensitive = {
            k for k in payment if k.startswith(("sender_card", "sender_first", "sender_last"))
        }
        if not sensitive:
            return None
        payment.update({k: "[redacted]" for k in sensitive})
        data = base64.b64encode(json.dumps(payment).encode()).decode()
        return urlencode({"data": data, "signature": fields.get("signature", "")}).encode()

    def verify(self, body: bytes, headers: Mapping[str, str]) -> None:
        fields = _fields(body)
        data, signature = fields.get("data"), fields.get("signature")
        if not data or not signature:
            raise InvalidSignature("missing data or signature field")
        if not signature.isascii() or not signature_matches(
            self._settings.private_keys, data, signature
        ):
            raise InvalidSignature("signature does not match")

    def normalise(self, body: bytes, headers: Mapping[str, str]) -> list[Normalised]:
        data = _fields(body).get("data", "")
        try:
            payment = json.loads(base64.b64decode(data, validate=True), parse_float=Decimal)
        except (binascii.Error, ValueError):
            raise MalformedPayload("data is not base64 of a JSON object") from None
        if not isinstance(payment, dict):
            raise MalformedPayload("data is not base64 of a JSON object")
        return [self._normalise(payment)]

    def _normalise(self, payment: dict[str, Any]) -> Normalised:
        payment_id = str(payment.get("payment_id") or "")
        status = str(payment.get("status") or "")
        # LiqPay has no event id: a payment's status change is the event.
        event_id = f"{payment_id}-{status}"
        event_type = f"payment.{status}"
        if not payment_id or not status:
            raise MalformedPayload("LiqPay payment without payment_id or status")
        kind = self._kind(status)
        if kind is None:
            reason = (
                "a sandbox payment (set LIQPAY_ALLOW_SANDBOX=true to apply them)"
                if status == "sandbox"
                else "status not handled"
            )
            return Ignored(event_id, event_type, reason)
        invoice = InvoiceRef.from_text(str(payment.get("order_id") or ""))
        if not invoice and kind in (PaymentKind.PAID, PaymentKind.PENDING):
            return Ignored(event_id, event_type, "no order_id")
        amount = payment.get("amount")
        currency = payment.get("currency")
        if (amount is not None and not isinstance(amount, Decimal | int)) or isinstance(
            amount, bool
        ):
            # A field of the wrong type is not "no money": kept as unprocessed, never ignored.
            raise MalformedPayload("LiqPay amount is not a number")
        if currency is not None and not isinstance(currency, str):
            raise MalformedPayload("LiqPay currency is not a string")
        if kind is PaymentKind.PAID and (amount is None or not currency):
            # Paid, but how much we cannot read: a body we cannot read, kept for a person.
            raise MalformedPayload("LiqPay paid event without amount or currency")
        stamp = payment.get("end_date") or payment.get("create_date")
        return PaymentEvent(
            provider=self.name,
            event_id=event_id,
            event_type=event_type,
            kind=kind,
            token=payment_id,
            invoice=invoice,
            amount=Decimal(amount) if isinstance(amount, Decimal | int) else None,
            currency=str(currency).upper() if currency else None,
            occurred_at=datetime.fromtimestamp(int(stamp) / 1000, tz=UTC)
            if isinstance(stamp, int)
            else datetime.fromtimestamp(0, tz=UTC),
            object_id=payment_id,
            regular_payment_provider=RegularPaymentProvider.LIQPAY,
            payment_method=str(payment.get("paytype") or "") or None,
            details={"action": str(payment.get("action") or "")},
        )

    def _kind(self, status: str) -> PaymentKind | None:
        if status == "success" or (status == "sandbox" and self._settings.allow_sandbox):
            return PaymentKind.PAID
        if status == "sandbox" or status in IGNORED:
            return None
        if status in FAILED:
            return PaymentKind.FAILED
        if status == "reversed":
            return PaymentKind.REFUNDED
        return PaymentKind.PENDING  # 3ds_verify, wait_accept, processing, hold_wait, ...
