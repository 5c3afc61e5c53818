"""Operators' own systems: payment notifications signed per the Standard Webhooks spec.

For a bank reconciliation feed, a cash desk or another internal system. Each source has
its own URL (``/webhooks/generic/<source>``) and secrets; the signature is checked with
the ``standardwebhooks`` package (id, timestamp within 5 minutes, HMAC-SHA256), and the
body against the published JSON Schema (payhooks/domain/schemas/payment-notification.schema.json):
an invalid body gets 422 with the schema's complaints.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from functools import cache
from importlib import resources
from typing import Any

import jsonschema
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from payhooks.domain.events import (
    InvoiceRef,
    Normalised,
    PaymentEvent,
    PaymentKind,
    RegularPaymentProvider,
)
from payhooks.providers.kit.receiver_errors import (
    InvalidPayload,
    InvalidSignature,
    MalformedPayload,
)
from payhooks.providers.kit.receiving import ReceiverDefaults, load_json_object

# The spec's signature header: space-separated "v1,<base64>" entries. Checked here, not left to
# the package, whose answer to a malformed entry changed between releases (a ValueError in
# 1.1, a plain mismatch in 1.3): the sender should be told its header is malformed.
_SIGNATURE_ENTRY = re.compile(r"v[0-9]+,[A-Za-z0-9+/]+={0,2}")


def _well_formed(signature_header: str) -> bool:
    entries = signature_header.split()
    return bool(entries) and all(_SIGNATURE_ENTRY.fullmatch(entry) for entry in entries)


@cache
def notification_schema() -> dict[str, Any]:
    text = resources.files("payhooks.domain.schemas").joinpath("payment-notification.schema.json")
    schema: dict[str, Any] = json.loads(text.read_text())
    return schema


class GenericWebhook(ReceiverDefaults):
    bad_signature_status = 401
    signature_headers: tuple[str, ...] = ("webhook-id", "webhook-timestamp", "webhook-signature")

    def __init__(self, source: str, secrets: tuple[str, ...]) -> None:
        if not secrets:
            raise ValueError(f"generic source {source} needs at least one secret")
        self.source = source
        self.name = f"generic/{source}"
        self._webhooks = [Webhook(secret) for secret in secrets]
        self._validator = _StrictValidator(notification_schema(), format_checker=_FORMATS)

    def redact(self, body: bytes) -> bytes | None:
        return None  # the schema admits no card or bank details

    def verify(self, body: bytes, headers: Mapping[str, str]) -> None:
        wanted = {h: headers.get(h, "") for h in self.signature_headers}
        if not all(wanted.values()):
            raise InvalidSignature("missing webhook-id, webhook-timestamp or webhook-signature")
        if not _well_formed(wanted["webhook-signature"]):
            raise InvalidSignature("malformed webhook-signature header")
        for webhook in self._webhooks:  # several secrets per source, for rotation
            try:
                webhook.verify(body, wanted, json_parse=False)
                return
            except WebhookVerificationError as exc:
                if "too old" in str(exc) or "too new" in str(exc):
                    raise InvalidSignature("timestamp outside the 5-minute window") from None
            except (ValueError, UnicodeDecodeError):
                # The package raises ValueError for a malformed signature entry.
                raise InvalidSignature("malformed webhook-signature header") from None
        raise InvalidSignature("signature does not match")

    def normalise(self, body: bytes, headers: Mapping[str, str]) -> list[Normalised]:
        notification = load_json_object(body)
        errors = sorted(_describe(e) for e in self._validator.iter_errors(notification))
        if errors:
            raise InvalidPayload("the body does not match the payment notification schema", errors)
        event_id = headers.get("webhook-id", "")
        if not event_id:
            raise MalformedPayload("missing webhook-id")
        kind = PaymentKind(notification["kind"])
        invoice_id = notification.get("invoice_id")
        return [
            PaymentEvent(
                provider=self.name,
                event_id=event_id,
                event_type=f"payment.{kind.value}",
                kind=kind,
                token=notification["reference"],
                invoice=InvoiceRef(invoice_id=invoice_id)
                if invoice_id is not None
                else InvoiceRef(number=notification["invoice_number"]),
                amount=Decimal(notification["amount"]),
                currency=notification["currency"],
                occurred_at=datetime.fromisoformat(notification["paid_at"]),
                object_id=notification["reference"],
                regular_payment_provider=RegularPaymentProvider(notification["provider"]),
                payment_method=RegularPaymentProvider(notification["provider"]).name.lower(),
                details={
                    "source": self.source,
                    **({"notes": notification["notes"]} if notification.get("notes") else {}),
                },
            )
        ]


def _integer(checker: Any, instance: Any) -> bool:
    # JSON Schema counts 197.0 as an integer; an invoice Id written so is a sender's bug.
    return isinstance(instance, int) and not isinstance(instance, bool)


_StrictValidator = jsonschema.validators.extend(
    jsonschema.Draft202012Validator,
    type_checker=jsonschema.Draft202012Validator.TYPE_CHECKER.redefine("integer", _integer),
)
_FORMATS = jsonschema.FormatChecker(formats=())


def _real_date_time(instance: object) -> bool:
    """The pattern fixes the shape; this refuses what the calendar does not have."""
    if isinstance(instance, str):
        datetime.fromisoformat(instance)
    return True


_FORMATS.checks("date-time", raises=ValueError)(_real_date_time)


def _describe(error: jsonschema.ValidationError) -> str:
    where = "/".join(str(p) for p in error.absolute_path) or "(body)"
    if error.validator == "anyOf":
        # jsonschema's own message would repeat the whole body.
        alternatives = [" and ".join(s.get("required", [])) for s in error.validator_value]
        return f"{where}: needs {' or '.join(alternatives)}"
    return f"{where}: {error.message}"
