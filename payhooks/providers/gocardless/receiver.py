"""GoCardless: batched webhooks verified with the official SDK, and a pure normaliser.

One request carries many unrelated events. Each payment event becomes its own job,
deduplicated by its event id (``EV…``). A payment event names only its payment
(``links.payment``); the job fetches the payment for its amount, currency, metadata
and mandate (step.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from gocardless_pro import webhooks
from gocardless_pro.errors import InvalidSignatureError

from payhooks.domain.events import (
    Ignored,
    InvoiceRef,
    Normalised,
    PaymentEvent,
    PaymentKind,
    RegularPaymentProvider,
)
from payhooks.providers.gocardless.settings import GoCardlessSettings
from payhooks.providers.kit.receiver_errors import (
    InvalidSignature,
    MalformedPayload,
    SignedButUnreadable,
)
from payhooks.providers.kit.receiving import SectionReceiver, load_json_object, redact_json

PENDING = frozenset({"created", "submitted", "customer_approval_granted"})
FAILED = frozenset({"failed", "cancelled", "customer_approval_denied"})
#: Payment actions by which money already collected goes back to the customer: a
#: chargeback under the Direct Debit Guarantee, a late failure debited from a payout.
REVERSED = frozenset({"charged_back", "late_failure_settled"})
#: Refund actions after which the money is (or is committed to be) the customer's. Not
#: ``failed`` or ``funds_returned``: the refund never reached the customer and the money
#: came back (GoCardless API reference, "Refund actions").
REFUNDED = frozenset({"created", "paid", "refund_settled"})
#: The money came back: a refund that failed or whose funds were returned, a chargeback
#: the customer's bank cancelled. The reversal they undo no longer counts.
REFUND_UNDONE = frozenset({"failed", "funds_returned"})
REINSTATED = frozenset({"chargeback_cancelled"})


class GoCardlessWebhook(SectionReceiver[GoCardlessSettings]):
    SECTION = GoCardlessSettings
    name = "gocardless"
    bad_signature_status = 498  # "Token Invalid", what GoCardless documents
    #: GoCardless recommends 204 for a request with nothing of interest.
    nothing_to_do_status = 204
    signature_headers: tuple[str, ...] = ("Webhook-Signature",)

    def redact(self, body: bytes) -> bytes | None:
        return redact_json(body)

    def verify(self, body: bytes, headers: Mapping[str, str]) -> None:
        signature = headers.get("Webhook-Signature")
        # The SDK raises TypeError, not InvalidSignatureError, for a missing header.
        if not signature:
            raise InvalidSignature("missing Webhook-Signature header")
        for secret in self._settings.webhook_secrets:  # several during a secret change
            try:
                webhooks.parse(body, secret, signature)
                return
            except InvalidSignatureError:
                continue
            except (ValueError, KeyError, TypeError, RecursionError) as exc:
                # The signature matched (it is checked first), the JSON did not parse.
                raise SignedButUnreadable("signed body is not a GoCardless event batch") from exc
        raise InvalidSignature("signature does not match")

    def normalise(self, body: bytes, headers: Mapping[str, str]) -> list[Normalised]:
        batch = load_json_object(body)
        events = batch.get("events")
        if not isinstance(events, list):
            raise MalformedPayload("GoCardless webhook without an events list")
        return [
            normalise_event(
                event,
                paid_action=self._settings.paid_action,
                invoice_metadata_key=self._invoice_metadata_key,
            )
            for event in events
        ]


def normalise_event(event: Any, *, paid_action: str, invoice_metadata_key: str) -> Normalised:
    if not isinstance(event, dict) or not isinstance(event.get("id"), str):
        raise MalformedPayload("GoCardless event without an id")
    event_id = event["id"]
    resource = str(event.get("resource_type", ""))
    action = str(event.get("action", ""))
    event_type = f"{resource}.{action}"
    links: dict[str, Any] = event["links"] if isinstance(event.get("links"), dict) else {}

    kind = _kind(resource, action, paid_action)
    if kind is None:
        return Ignored(event_id, event_type, "event type not handled")
    payment_id = links.get("payment") if isinstance(links.get("payment"), str) else None
    refund_id = links.get("refund") if isinstance(links.get("refund"), str) else None
    # A refund event names only its refund: the job reads the refund for its payment (the
    # token) and amount; the refund's id stands in for the token until then.
    token = payment_id or refund_id
    if not token:
        # Every payment and refund event names its object; one that does not (a refund or a
        # chargeback among them: money moved) is kept for a person, never dropped.
        raise MalformedPayload(f"GoCardless {event_type} event without links.payment")

    # resource_metadata, when GoCardless includes it, is the payment's own metadata.
    metadata = event.get("resource_metadata")
    metadata = metadata if isinstance(metadata, dict) else {}
    raw_invoice = metadata.get(invoice_metadata_key)
    # Only an Id is taken here; the job reads a number or the payment reference itself.
    parsed = InvoiceRef.from_text(raw_invoice) if isinstance(raw_invoice, str) else InvoiceRef()
    invoice = InvoiceRef(invoice_id=parsed.invoice_id)
    details = {"event": event_id}
    if resource == "refunds" and refund_id:
        details["refund"] = refund_id
    cause = (
        event.get("details", {}).get("cause") if isinstance(event.get("details"), dict) else None
    )
    if isinstance(cause, str):
        details["cause"] = cause
    return PaymentEvent(
        provider="gocardless",
        event_id=event_id,
        event_type=event_type,
        kind=kind,
        token=token,
        invoice=invoice,
        amount=None,  # read from the payment by the job
        currency=None,
        occurred_at=_parse_time(event.get("created_at")),
        object_id=token,
        regular_payment_provider=RegularPaymentProvider.GOCARDLESS,
        payment_method="direct debit",
        details=details,
    )


def _kind(resource: str, action: str, paid_action: str) -> PaymentKind | None:
    if resource == "refunds":
        if action in REFUND_UNDONE:
            return PaymentKind.REINSTATED
        return PaymentKind.REFUNDED if action in REFUNDED else None
    if resource != "payments":
        return None
    if action == paid_action:
        return PaymentKind.PAID
    if action == "paid_out":
        # After `confirmed` this changes nothing (the payment is already applied); alone,
        # for example for a payment confirmed before the webhook existed, it still pays.
        return PaymentKind.PAID
    if action in PENDING or action == "confirmed":
        return PaymentKind.PENDING
    if action in FAILED:
        return PaymentKind.FAILED
    if action in REVERSED:
        return PaymentKind.REFUNDED
    if action in REINSTATED:
        return PaymentKind.REINSTATED
    return None


def _parse_time(value: Any) -> datetime:
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            pass
    return datetime.fromtimestamp(0, tz=UTC)
