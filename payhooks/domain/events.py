"""The normalised payment event: what every provider's webhook becomes.

Receiver and workers share this one shape. It travels through Redis as JSON
(never pickled), so a job enqueued by one version can be read by the next.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from decimal import Decimal
from enum import IntEnum, StrEnum
from typing import Any

import orjson


class RegularPaymentProvider(IntEnum):
    """Nexudus ``eRegularPaymentProvider`` (the enum of CoworkerInvoicePaymentToken)."""

    MULTI_GATEWAY = 1
    STRIPE = 2
    FORTE = 3
    AUTHORIZE_NET_SUBSCRIPTION = 4
    PAYPAL_STANDARD_SUBSCRIPTION = 5
    PAYPAL_ADAPTIVE = 6
    EPAY = 7
    BRAINTREE = 8
    EZIDEBIT = 9
    LIQPAY = 10
    STRIPE_ACH = 11
    GOCARDLESS = 12
    STRIPE_BACS = 13
    CREDIT_NOTE = 94
    GIFT_CARD = 95
    BANK_TRANSFER = 96
    CASH = 97
    CHECK = 98
    OTHER = 99


class PaymentKind(StrEnum):
    PAID = "paid"
    PENDING = "pending"
    FAILED = "failed"
    REFUNDED = "refunded"
    #: Money that went back came back: a dispute won, a refund that failed. Its reversal
    #: no longer counts (the worker's reversal records).
    REINSTATED = "reinstated"


#: Details a refund's events carry so that one refund stated twice is counted once
#: by the worker's reversal records: the object whose refunds they are (a Stripe charge) ...
REFUNDS_OF = "refunds_of"
#: ... and, on an event stating all that was refunded of it so far (Stripe's
#: ``charge.refunded``), "true": such a figure already holds the refunds stated one by one.
REFUNDED_TOTAL = "refunded_total"
#: On a paid event: the provider says all of this payment's money went back, by a status
#: of the payment itself that no reversal event of ours may have told yet (the value: that
#: status). The worker records it as the payment's reversal before applying the event.
WENT_BACK = "went_back"


@dataclass(frozen=True, slots=True)
class InvoiceRef:
    """Where the payment says its Nexudus invoice is.

    ``invoice_id`` is the CoworkerInvoice Id; ``number`` is matched exactly against the
    invoice's InvoiceNumber, then its PaymentReference, through the Nexudus search.
    """

    invoice_id: int | None = None
    number: str | None = None

    @classmethod
    def from_text(cls, text: str) -> InvoiceRef:
        """Read a reference a person typed: an Id when it can only be one, else a number.

        ``str.isdigit`` alone accepts digits such as "²" that ``int`` rejects, and an Id
        is never 19 digits long; both go to the number search instead of crashing.
        """
        text = text.strip()
        if text.isascii() and text.isdigit() and len(text) < 19:
            return cls(invoice_id=int(text))
        return cls(number=text) if text else cls()

    def __bool__(self) -> bool:
        return self.invoice_id is not None or bool(self.number)

    def describe(self) -> str:
        if self.invoice_id is not None:
            return f"invoice id {self.invoice_id}"
        if self.number:
            return f"invoice number {self.number!r}"
        return "invoice not known yet (read from the provider's API by the job)"


_SAME_PAYMENTS_AS = {"paypal-ipn": "paypal"}


@dataclass(frozen=True, slots=True)
class PaymentEvent:
    """One provider event, normalised.

    ``regular_payment_provider`` is None when the webhook does not say which payment
    method was used (a Stripe PaymentIntent with several allowed types); the job looks
    it up with the provider's API. ``amount`` is in major units.
    """

    provider: str
    event_id: str
    event_type: str
    kind: PaymentKind
    token: str
    invoice: InvoiceRef
    amount: Decimal | None
    currency: str | None
    occurred_at: datetime
    object_id: str
    regular_payment_provider: RegularPaymentProvider | None = None
    payment_method: str | None = None
    details: dict[str, str] = field(default_factory=dict)

    @property
    def payment_source(self) -> str:
        """Whose payment the token names. PayPal's REST webhooks and its IPN describe the
        same transactions by the same id, so a capture announced by both is one payment."""
        return _SAME_PAYMENTS_AS.get(self.provider, self.provider)

    @property
    def key(self) -> str:
        """The dedupe key: one provider event is one job, however often it is delivered."""
        return f"{self.provider}:{self.event_id}"

    def with_changes(self, **changes: Any) -> PaymentEvent:
        return replace(self, **changes)

    def to_json(self) -> str:
        # Built by hand: dataclasses.asdict deep-copies, and this runs on every webhook.
        data = {
            "provider": self.provider,
            "event_id": self.event_id,
            "event_type": self.event_type,
            "kind": self.kind.value,
            "token": self.token,
            "invoice": {"invoice_id": self.invoice.invoice_id, "number": self.invoice.number},
            "amount": None if self.amount is None else str(self.amount),
            "currency": self.currency,
            "occurred_at": self.occurred_at.isoformat(),
            "object_id": self.object_id,
            "regular_payment_provider": None
            if self.regular_payment_provider is None
            else int(self.regular_payment_provider),
            "payment_method": self.payment_method,
            "details": self.details,
        }
        return orjson.dumps(data).decode()

    @classmethod
    def from_json(cls, raw: str | bytes) -> PaymentEvent:
        data = json.loads(raw)
        provider_value = data.get("regular_payment_provider")
        amount = data.get("amount")
        return cls(
            provider=data["provider"],
            event_id=data["event_id"],
            event_type=data["event_type"],
            kind=PaymentKind(data["kind"]),
            token=data["token"],
            invoice=InvoiceRef(**data["invoice"]),
            amount=None if amount is None else Decimal(amount),
            currency=data.get("currency"),
            occurred_at=datetime.fromisoformat(data["occurred_at"]),
            object_id=data["object_id"],
            regular_payment_provider=(
                None if provider_value is None else RegularPaymentProvider(provider_value)
            ),
            payment_method=data.get("payment_method"),
            details=dict(data.get("details") or {}),
        )


@dataclass(frozen=True, slots=True)
class Ignored:
    """A verified event we acknowledge but do not act on, and why."""

    event_id: str
    event_type: str
    reason: str


Normalised = PaymentEvent | Ignored


def utc_from_timestamp(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, tz=UTC)
