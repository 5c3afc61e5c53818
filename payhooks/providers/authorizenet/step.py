"""Confirms an Authorize.Net transaction with the API before any money is recorded.

``getTransactionDetails`` gives the transaction's status, amount, ``order.invoiceNumber``
and subscription. A paid notification whose transaction is not captured is not trusted;
one whose money went back (it names ``returnedItems``, as a returned eCheck does, or its
status is returnedItem or chargeback) is told so (``WENT_BACK``), and the worker holds the
payment, before any scan has listed the return.

A refund is a transaction of its own: ``refund.created`` names the refund, not the payment
it returns, so the refund is read for ``refTransId`` (the payment) and its amount, and the
event is told as a reversal of that payment. A void names the voided payment itself.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

from payhooks.domain.events import WENT_BACK, InvoiceRef, PaymentEvent, PaymentKind
from payhooks.providers.authorizenet.settings import AuthorizeNetSettings
from payhooks.providers.kit.provider_api import ProviderApi
from payhooks.providers.kit.section_step import SectionStep
from payhooks.providers.kit.step_errors import ProviderLookupError, ProviderLookupUnavailable

CAPTURED = frozenset({"capturedPendingSettlement", "settledSuccessfully"})
REFUNDED = frozenset({"refundPendingSettlement", "refundSettledSuccessfully"})
#: The statuses of money that went back with no notification: an eCheck the bank
#: returned, one charged back (unauthorised), and that chargeback reversed. Authorize.Net
#: gives them to the return's own transaction (lister.py); were they a payment's own, its
#: paid event is held (WENT_BACK_STATUSES).
RETURNED = "returnedItem"
CHARGED_BACK = "chargeback"
CHARGEBACK_REVERSED = "chargebackReversal"
#: The statuses in which the money of a payment is the merchant's ...
PAID = CAPTURED | {CHARGEBACK_REVERSED}
#: ... and those in which it went back: a payment's own (README, Reconciliation), told
#: to the worker as all of it gone back.
WENT_BACK_STATUSES = frozenset({RETURNED, CHARGED_BACK})
NOT_FOUND = "E00040"
#: "An error occurred during processing. Please try again."
TRY_AGAIN = "E00001"


API = ProviderApi(
    "Authorize.Net API", credentials="AUTHORIZENET_LOGIN_ID and AUTHORIZENET_TRANSACTION_KEY"
)


class AuthorizeNetStep(SectionStep[AuthorizeNetSettings]):
    SECTION = AuthorizeNetSettings

    def __call__(self, event: PaymentEvent) -> PaymentEvent:
        if event.kind is PaymentKind.REFUNDED and event.event_type.endswith(".refund.created"):
            return self._refunded_payment(event)
        if event.kind is not PaymentKind.PAID and event.kind is not PaymentKind.PENDING:
            return event
        transaction = self._fetch(event.token)
        status = str(transaction.get("transactionStatus", ""))
        if status not in PAID and status not in WENT_BACK_STATUSES:
            raise ProviderLookupError(
                f"Authorize.Net transaction {event.token} is {status or 'of unknown status'}, "
                "not captured: no money is recorded"
            )
        order = transaction.get("order") or {}
        invoice = InvoiceRef.from_text(str(order.get("invoiceNumber") or ""))
        details = dict(event.details)
        # Its money went back: the worker holds the payment (or flags it, should an earlier
        # attempt of this event have reached Nexudus). Won back, a replay applies it.
        details.pop(WENT_BACK, None)
        if status in WENT_BACK_STATUSES:
            details[WENT_BACK] = status
        elif transaction.get("returnedItems"):
            # How Authorize.Net says it: the payment keeps its status and names its returns
            # (the lists' hasReturnedItems), all of it gone back as the lister tells it.
            details[WENT_BACK] = RETURNED
        subscription = transaction.get("subscription") or {}
        if subscription.get("id"):
            details["subscription"] = str(subscription["id"])
        amount = transaction.get("settleAmount", transaction.get("authAmount"))
        return event.with_changes(
            invoice=invoice,
            amount=Decimal(str(amount)) if amount is not None else None,
            currency=self._settings.currency,
            details=details,
        )

    def _refunded_payment(self, event: PaymentEvent) -> PaymentEvent:
        refund = self._fetch(event.token)
        status = str(refund.get("transactionStatus", ""))
        payment = str(refund.get("refTransId") or "")
        if status not in REFUNDED or not payment:
            # Told as it came, the refund would name no payment of ours and take back
            # nothing: a person must see it.
            raise ProviderLookupError(
                f"Authorize.Net transaction {event.token} is {status or 'of unknown status'} "
                f"and names {'payment ' + payment if payment else 'no payment (refTransId)'}: "
                "not a refund we can apply to a payment"
            )
        amount = refund.get("settleAmount", refund.get("authAmount"))
        return event.with_changes(
            token=payment,
            amount=Decimal(str(amount)) if amount is not None else None,
            currency=self._settings.currency,
        )

    def _fetch(self, transaction_id: str) -> dict[str, Any]:
        try:
            body = call(self._settings, "getTransactionDetailsRequest", {"transId": transaction_id})
        except Refused as exc:
            if exc.code == NOT_FOUND:
                raise ProviderLookupError(
                    f"Authorize.Net has no transaction {transaction_id}"
                ) from None
            raise ProviderLookupError(f"Authorize.Net refused the lookup: {exc}") from None
        transaction: dict[str, Any] = body.get("transaction") or {}
        return transaction


class Refused(ProviderLookupError):
    """The API answered with an error result code (``code``): no retry mends it."""

    def __init__(self, code: str, text: str) -> None:
        super().__init__(f"{code} {text}")
        self.code = code


def call(
    section: AuthorizeNetSettings,
    request: str,
    fields: dict[str, Any],
) -> dict[str, Any]:
    """One JSON API request (``request``: its name, such as ``getTransactionListRequest``)
    with our credentials and ``fields``; the answer when its result code is Ok. Raises
    ``Refused`` for an error code, ``ProviderLookupUnavailable`` (``RateLimited`` for a
    429) when the API cannot answer now."""
    if not section.login_id or not section.transaction_key:
        raise ProviderLookupError(
            "AUTHORIZENET_LOGIN_ID and AUTHORIZENET_TRANSACTION_KEY are needed to call the "
            "Authorize.Net API"
        )
    authentication = {"name": section.login_id, "transactionKey": section.transaction_key}
    payload = {request: {"merchantAuthentication": authentication, **fields}}
    response = API.send("POST", section.api_url, json=payload)
    try:
        # The API prefixes its JSON with a byte-order mark.
        body: dict[str, Any] = json.loads(response.content.decode("utf-8-sig"))
        messages = body.get("messages") or {}
        first = (messages.get("message") or [{}])[0]
    except (ValueError, AttributeError, IndexError):
        raise ProviderLookupUnavailable("Authorize.Net API answered no JSON") from None
    if messages.get("resultCode") != "Ok":
        code, text = str(first.get("code", "?")), str(first.get("text", ""))
        if code == TRY_AGAIN:
            raise ProviderLookupUnavailable(f"Authorize.Net API: {code} {text}")
        raise Refused(code, text)
    return body
