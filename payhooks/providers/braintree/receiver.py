"""Braintree: form-encoded notifications verified and parsed with the official SDK.

``bt_signature`` / ``bt_payload`` go to ``webhook_notification.parse``, which checks the
HMAC for the public key named in the signature (several key pairs may be configured, for
rotation or several merchant accounts). The legacy endpoint check (``GET ?bt_challenge=``)
is answered with ``webhook_notification.verify``. Braintree notifications carry no event
id. A transaction's payment or failure is keyed by the transaction and the outcome
(``transaction-<id>-paid``), whichever kind announced it and whenever: a transaction is
paid (or fails) once, and reconciliation (lister.py), which finds the transaction and never
the notification, gives the same key. A refund is a transaction of its own (a credit,
naming the sale in ``refunded_transaction_id``), keyed the same way by its own id
(``transaction-<credit id>-refunded``). Braintree notifies no refund as such, so
reconciliation finds them; a ``transaction_settled`` (or ``…_settlement_declined``) whose
transaction is a credit (an ACH refund's) is read as that refund's, never as a payment, and
``refund_failed`` undoes its refund (``transaction-<credit id>-reinstated``, as a scan
finding it declined says). Disputes, and notifications without a transaction,
are keyed by (kind, timestamp, subject id): a transaction may be disputed more than once.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qs, urlencode

import braintree
from braintree.exceptions.invalid_signature_error import InvalidSignatureError

from payhooks.domain.events import (
    Ignored,
    InvoiceRef,
    Normalised,
    PaymentEvent,
    PaymentKind,
    RegularPaymentProvider,
)
from payhooks.providers.braintree.settings import BraintreeSettings
from payhooks.providers.kit.receiver_errors import (
    InvalidSignature,
    MalformedPayload,
    SignedButUnreadable,
    WebhookError,
)
from payhooks.providers.kit.receiving import FORM, ReceiverDefaults
from payhooks.settings import Settings

Kind = braintree.WebhookNotification.Kind
PAID = frozenset(
    {Kind.SubscriptionChargedSuccessfully, Kind.TransactionSettled, Kind.LocalPaymentCompleted}
)
FAILED = frozenset({Kind.SubscriptionChargedUnsuccessfully, Kind.TransactionSettlementDeclined})
#: Disputes after which the money is with the customer. Braintree debits a chargeback when
#: it is opened; accepting it, losing it or letting it expire leaves the money with the
#: customer; winning returns it (PayPal help, "I received a chargeback on my Braintree
#: control panel", paypal.com/us/selfhelp/article/faq3379).
MONEY_LEFT = frozenset(
    {
        Kind.DisputeOpened,
        Kind.DisputeAccepted,
        Kind.DisputeAutoAccepted,
        Kind.DisputeLost,
        Kind.DisputeExpired,
    }
)
#: A refund's own transaction type (``refunded_transaction_id`` names the sale).
CREDIT = braintree.Transaction.Type.Credit
MONEY_MOVED = (PaymentKind.PAID, PaymentKind.REFUNDED, PaymentKind.REINSTATED)
#: A transaction's own outcomes, keyed by the transaction alone (see the module's doc).
OUTCOMES = (PaymentKind.PAID, PaymentKind.FAILED)
#: Why the other dispute kinds are not refunds.
NO_MONEY_LEFT = {
    Kind.DisputeDisputed: "dispute contested by the merchant: no money moved",
    Kind.DisputeUnderReview: "dispute under review: no money moved",
}


_SENSITIVE_XML = re.compile(
    r"<(bin|last-4|expiration-month|expiration-year|masked-number|unique-number-identifier|"
    r"account-number|routing-number|account-holder-name|last-name|cardholder-name)>"
    r"[^<]*</\1>"
)


_CHALLENGE = re.compile(r"[a-f0-9]{20,32}")


def _fields(body: bytes) -> tuple[str, str]:
    try:
        parsed = parse_qs(body.decode("utf-8"), keep_blank_values=True)
    except UnicodeDecodeError:
        raise MalformedPayload("body is not a form") from None
    return (parsed.get("bt_signature") or [""])[0], (parsed.get("bt_payload") or [""])[0]


class BraintreeWebhook(ReceiverDefaults):
    name = "braintree"
    content_types = FORM
    # the signature is a form field (no signature header)

    @classmethod
    def from_settings(cls, settings: Settings) -> BraintreeWebhook:
        return cls(settings.provider(BraintreeSettings))

    def __init__(self, section: BraintreeSettings) -> None:
        if not section.keys:
            raise ValueError("at least one Braintree key pair is required")
        env = (
            braintree.Environment.Production
            if section.environment == "production"
            else (braintree.Environment.Sandbox)
        )
        merchant_id = section.merchant_id or ""
        self._gateways = {
            public: braintree.BraintreeGateway(
                braintree.Configuration(env, merchant_id, public, private)
            )
            for public, private in section.keys
        }
        self._invoice_field = section.invoice_field

    def redact(self, body: bytes) -> bytes | None:
        """Card and bank elements of the XML emptied (then no longer re-verifiable)."""
        signature, payload = _fields(body)
        try:
            xml = base64.b64decode(payload).decode("utf-8")
        except (ValueError, UnicodeDecodeError):
            return None
        redacted = _SENSITIVE_XML.sub(r"<\1>[redacted]</\1>", xml)
        if redacted == xml:
            return None
        return urlencode(
            {
                "bt_signature": signature,
                "bt_payload": base64.encodebytes(redacted.encode()).decode(),
            }
        ).encode()

    def answer_challenge(self, challenge: str) -> str:
        # The SDK checks with re.match and `$`, which lets a trailing newline through and
        # raises for the rest: refuse anything else here, as a 400.
        if not _CHALLENGE.fullmatch(challenge):
            raise MalformedPayload("bt_challenge must be 20-32 lower-case hex characters")
        gateway = next(iter(self._gateways.values()))
        return str(gateway.webhook_notification.verify(challenge))

    def _parse(self, body: bytes) -> Any:
        signature, payload = _fields(body)
        if not signature or not payload:
            raise InvalidSignature("missing bt_signature or bt_payload")
        # Several public_key|hmac pairs may be present: use the first one that is ours.
        publics = [pair.split("|")[0] for pair in signature.split("&")]
        gateway = next((self._gateways[p] for p in publics if p in self._gateways), None)
        if gateway is None:
            raise InvalidSignature("signed with a public key that is not configured")
        try:
            return gateway.webhook_notification.parse(signature, payload)
        except InvalidSignatureError as exc:
            raise InvalidSignature(f"signature rejected ({exc})") from None

    def verify(self, body: bytes, headers: Mapping[str, str]) -> None:
        try:
            self._parse(body)
        except (WebhookError, UnicodeEncodeError):
            raise  # refused before, or (a non-ASCII payload) instead of, the signature check
        except Exception as exc:
            # The SDK checks the signature before it reads the XML.
            raise SignedButUnreadable("signed payload is not a notification the SDK reads") from exc

    def normalise(self, body: bytes, headers: Mapping[str, str]) -> list[Normalised]:
        notification = self._parse(body)
        kind = str(notification.kind)
        when: datetime = notification.timestamp.replace(tzinfo=UTC)
        transaction, extra = _transaction_of(notification)
        dispute = getattr(notification, "dispute", None)
        payment_kind, why_not = _kind(kind, dispute)
        if transaction is not None and dispute is None and payment_kind in OUTCOMES:
            event_id = outcome_event_id(str(transaction.id), payment_kind)
        else:
            subject = getattr(transaction, "id", None) or extra.get("subscription", "")
            event_id = f"{kind}-{int(when.timestamp())}-{subject}"
        if payment_kind is None:
            return [Ignored(event_id, kind, why_not)]
        if dispute is None and (
            kind == Kind.RefundFailed or str(getattr(transaction, "type", "")) == CREDIT
        ):
            # A refund's own transaction (an ACH refund settles, or is declined, and is
            # notified as a sale is; a refund failed): its money went back, or did not;
            # never a payment.
            went_back = payment_kind is PaymentKind.PAID
            return [refund_event(transaction, went_back, kind, when, self._invoice_field)]
        if transaction is None and payment_kind in MONEY_MOVED:
            # Money moved and we cannot tell which payment: kept for a person, not dropped.
            raise MalformedPayload(f"Braintree {kind} without a transaction")
        if transaction is None:
            return [Ignored(event_id, kind, "no transaction in the notification")]
        # A dispute's money is its own (the disputed amount, in the dispute's currency);
        # the transaction inside it is the payment it undoes, and gives the token.
        return [
            transaction_event(
                transaction,
                event_id=event_id,
                event_type=kind,
                kind=payment_kind,
                occurred_at=when,
                invoice_field=self._invoice_field,
                details=extra,
                money=dispute,
            )
        ]


def outcome_event_id(transaction_id: str, kind: PaymentKind) -> str:
    """The event id of a transaction's outcome (a sale's payment or failure, a refund's
    money gone back or not), however it was learnt of."""
    return f"transaction-{transaction_id}-{kind.value}"


def transaction_event(
    transaction: Any,
    *,
    event_id: str,
    event_type: str,
    kind: PaymentKind,
    occurred_at: datetime,
    invoice_field: str | None,
    details: dict[str, str],
    money: Any = None,
) -> Normalised:
    """The event of ``transaction`` (an SDK Transaction, as a notification or a search
    gives it); ``money``, when set, states the amount instead (a dispute's)."""
    invoice = invoice_of(transaction, invoice_field)
    if not invoice and kind is PaymentKind.PAID:
        return Ignored(event_id, event_type, "no order_id on the transaction")
    money = money or transaction
    amount = getattr(money, "amount_disputed", None) or getattr(money, "amount", None)
    currency = getattr(money, "currency_iso_code", None)
    return PaymentEvent(
        provider=BraintreeWebhook.name,
        event_id=event_id,
        event_type=event_type,
        kind=kind,
        token=str(transaction.id),
        invoice=invoice,
        amount=Decimal(str(amount)) if amount is not None else None,
        currency=str(currency).upper() if currency else None,
        occurred_at=occurred_at,
        object_id=str(transaction.id),
        regular_payment_provider=RegularPaymentProvider.BRAINTREE,
        payment_method=getattr(transaction, "payment_instrument_type", None),
        details=details,
    )


def refund_event(
    credit: Any, went_back: bool, event_type: str, occurred_at: datetime, invoice_field: str | None
) -> Normalised:
    """The event of a refund (a ``credit`` transaction, as a notification or a search gives
    it): the refunded sale's payment (its token, as the sale's own events give it) lost the
    credit's amount (``went_back``), or a refund counted before did not happen after all
    (voided, declined: reinstated). Keyed by the credit's own id, which no sale shares, so
    it is one event however it was learnt of, and several refunds of a sale add up."""
    kind = PaymentKind.REFUNDED if went_back else PaymentKind.REINSTATED
    event_id = outcome_event_id(str(credit.id), kind)
    # A search's credit names its sale by ``refunded_transaction_id``; the SDK's own
    # ``refund_failed`` sample (webhook_testing_gateway.py) by ``refunded_transaction_fk``.
    sale_id = getattr(credit, "refunded_transaction_id", None) or getattr(
        credit, "refunded_transaction_fk", None
    )
    if not sale_id:
        return Ignored(event_id, event_type, "a credit naming no refunded sale")
    sale = _Refunded(
        id=str(sale_id),
        order_id=getattr(credit, "order_id", None),
        custom_fields=getattr(credit, "custom_fields", None),
        payment_instrument_type=getattr(credit, "payment_instrument_type", None),
    )
    return transaction_event(
        sale,
        event_id=event_id,
        event_type=event_type,
        kind=kind,
        occurred_at=occurred_at,
        invoice_field=invoice_field,
        details={"refund": str(credit.id)},
        money=credit,
    )


@dataclass(frozen=True, slots=True)
class _Refunded:
    """What a refund tells of the sale it refunds: its id (the payment's token)."""

    id: str
    order_id: Any
    custom_fields: Any
    payment_instrument_type: Any


def invoice_of(transaction: Any, invoice_field: str | None) -> InvoiceRef:
    value = getattr(transaction, "order_id", None)
    if invoice_field:
        custom = getattr(transaction, "custom_fields", None) or {}
        value = custom.get(invoice_field, value) if isinstance(custom, dict) else value
    return InvoiceRef.from_text(str(value or ""))


def _kind(kind: str, dispute: Any) -> tuple[PaymentKind | None, str]:
    """The payment kind, or None and why the notification is not acted on."""
    if kind in PAID:
        return PaymentKind.PAID, ""
    if kind in FAILED:
        return PaymentKind.FAILED, ""
    if kind in NO_MONEY_LEFT:
        return None, NO_MONEY_LEFT[kind]
    if kind == Kind.RefundFailed:
        # The refund's money came back: it no longer counts (as when a scan finds it
        # declined, with the same key).
        return PaymentKind.REINSTATED, ""
    if kind == Kind.DisputeWon:
        # The money came back to the merchant: the dispute's reversal no longer counts.
        return PaymentKind.REINSTATED, ""
    if kind in MONEY_LEFT:
        if str(getattr(dispute, "kind", "")) == "retrieval":
            return None, "a retrieval asks for information: no money moved"
        return PaymentKind.REFUNDED, ""
    return None, "notification kind not handled"


def _transaction_of(notification: Any) -> tuple[Any, dict[str, str]]:
    """The transaction a notification is about, and references for the token's Notes."""
    extra: dict[str, str] = {}
    subscription = getattr(notification, "subscription", None)
    if subscription is not None:
        extra["subscription"] = str(subscription.id)
        if getattr(subscription, "payment_method_token", None):
            extra["payment_method_token"] = str(subscription.payment_method_token)
        transactions = getattr(subscription, "transactions", None) or []
        return (transactions[0] if transactions else None), extra
    dispute = getattr(notification, "dispute", None)
    if dispute is not None:
        extra["dispute"] = str(getattr(dispute, "id", ""))
        return getattr(dispute, "transaction", None), extra
    local = getattr(notification, "local_payment_completed", None)
    if local is not None:
        return getattr(local, "transaction", None), extra
    transaction = getattr(notification, "transaction", None)
    details = getattr(transaction, "credit_card_details", None)
    if details is not None and getattr(details, "token", None):
        extra["payment_method_token"] = str(details.token)
    return transaction, extra
