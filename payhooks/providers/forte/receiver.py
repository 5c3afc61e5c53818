"""Forte (CSG Forte, REST API v3 webhooks): no signature, so a secret URL and the API.

Forte documents no signature for its webhooks (developers.forte.net "Using Webhooks"):
the URL carries a secret of ours (``/webhooks/forte/<token>``, checked by the handler),
and the webhook only names a transaction. Its status here is a hint: the job reads the
transaction back from Forte's API (step.py) for its status,
amount and order number before any money is recorded. The body, as Forte's sample shows
it (support.forte.net article 1000102770): ``{"location_id": "loc_…", "transaction":
{"transaction_id": "trn_…", "action": "sale", "status": "ready", …}}``; the customer and
paymethod webhooks carry no transaction and are acknowledged and ignored.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from payhooks.domain.events import Ignored, InvoiceRef, Normalised, PaymentEvent, PaymentKind
from payhooks.domain.messages import body_digest
from payhooks.providers.forte.formats import (
    LOCATION_ID,
    PROVIDER,
    REGULAR_PAYMENT_PROVIDER,
    STATUS,
    TRANSACTION_ID,
    payment_method,
    received_at,
    sale_kind,
)
from payhooks.providers.forte.settings import ForteSettings
from payhooks.providers.kit.receiver_errors import BodyTooLarge, MalformedPayload
from payhooks.providers.kit.receiving import ReceiverDefaults, load_json_object, redact_json
from payhooks.settings import Settings

#: A webhook's own date is a hint too: the job takes Forte's record of it.
EPOCH = datetime.fromtimestamp(0, tz=UTC)
#: Forte's webhooks are a transaction's summary; anything far larger is not one of them.
MAX_BODY_BYTES = 64_000


#: Actions that return money to the customer (Forte's transaction actions).
MONEY_RETURNED = frozenset({"credit", "void"})


class ForteWebhook(ReceiverDefaults):
    name = PROVIDER
    # Forte does not document the header; its sample is JSON. Read the body, not the label.
    content_types = frozenset({"application/json", "text/json", "text/plain"})

    @classmethod
    def from_settings(cls, settings: Settings) -> ForteWebhook:
        return cls(settings.provider(ForteSettings).webhook_tokens)

    def __init__(self, url_tokens: tuple[str, ...]) -> None:
        if not url_tokens:
            raise ValueError("at least one Forte URL token is required")
        self.url_tokens = url_tokens

    def redact(self, body: bytes) -> bytes | None:
        return redact_json(body)

    def verify(self, body: bytes, headers: Mapping[str, str]) -> None:
        """The URL's token is the proof (checked before the body is read); size only here."""
        if len(body) > MAX_BODY_BYTES:
            raise BodyTooLarge("a Forte webhook is a few kilobytes")

    def normalise(self, body: bytes, headers: Mapping[str, str]) -> list[Normalised]:
        webhook = load_json_object(body)
        transaction = webhook.get("transaction")
        if not isinstance(transaction, dict):
            kind = next((k for k in ("customer", "paymethod", "schedule") if k in webhook), None)
            if kind is None:
                raise MalformedPayload("Forte webhook without a transaction")
            key = str(webhook.get("event_id") or _object_id(webhook[kind]) or kind)[:100]
            return [Ignored(key, f"{kind}.*", "not a transaction: no money moves")]
        transaction_id = _text(transaction, "transaction_id", TRANSACTION_ID.fullmatch)
        status = str(transaction.get("status") or "").lower()
        if not STATUS.fullmatch(status):
            raise MalformedPayload("Forte webhook without a readable status")
        action = str(transaction.get("action") or "")
        # Anyone who knows the URL may post; the body's digest keeps a forgery naming a
        # genuine transaction from making Forte's own webhook a duplicate.
        event_id = f"{transaction_id}:{status}:{body_digest(body)}"
        if action in MONEY_RETURNED:
            # A credit (refund) or a void moves money back; payhooks does not yet find the
            # sale it undoes, so it is kept for a person (listed, alerted), never dropped.
            raise MalformedPayload(
                f"Forte {action} {transaction_id}: money went back to the customer; payhooks "
                "does not record Forte credits or voids yet: handle it by hand, then dismiss"
            )
        if action != "sale":
            return [Ignored(event_id, f"transaction.{action[:40]}", "not a sale")]
        location = transaction.get("location_id", webhook.get("location_id"))
        return [sale_event(transaction, event_id=event_id, status=status, location=location)]


def sale_event(
    transaction: dict[str, Any], *, event_id: str, status: str, location: object
) -> PaymentEvent:
    """The event of a sale in ``status`` (a webhook's, or Forte's list of transactions)."""
    transaction_id = _text(transaction, "transaction_id", TRANSACTION_ID.fullmatch)
    location_id = _text({"location_id": location}, "location_id", LOCATION_ID.fullmatch)
    method = payment_method(transaction)
    return PaymentEvent(
        provider=PROVIDER,
        event_id=event_id,
        event_type="transaction.sale",
        # A hint until the job has read the transaction from Forte.
        kind=sale_kind(status, method) or PaymentKind.PENDING,
        token=transaction_id,
        invoice=InvoiceRef(),  # order_number comes from the API, in the job
        amount=None,
        currency=None,
        occurred_at=received_at(transaction.get("received_date")) or EPOCH,
        object_id=transaction_id,
        regular_payment_provider=REGULAR_PAYMENT_PROVIDER,
        payment_method=method,
        details={"location": location_id},
    )


def _text(values: dict[str, Any], name: str, valid: Any) -> str:
    value = values.get(name)
    if not isinstance(value, str) or not valid(value):
        raise MalformedPayload(f"Forte webhook without a readable {name}")
    return value


def _object_id(value: object) -> str | None:
    if isinstance(value, dict):
        for name in ("customer_token", "paymethod_token", "schedule_id"):
            if isinstance(value.get(name), str):
                return str(value[name])
    return None
