"""Reads a Forte transaction back from the REST API v3 before anything is recorded.

Forte signs no webhook, so nothing in it is trusted but the transaction id: the status
(hence the kind), the amount and the order number (the invoice) are the API's.
``GET {api}/organizations/{org}/locations/{loc}/transactions/{trn}`` with HTTP Basic
(API access id, API secure key) and ``X-Forte-Auth-Organization-Id`` (developers.forte.net
"REST API v3" authentication; support.forte.net article 11000081814).

Whatever brought the event (a webhook, or Forte's own list read by reconciliation), the
status the job confirmed is marked as its listed event's (``trn_…:<status>:listed``) in
that event's trail, so a reconcile scan counts it seen and queues no second job. An eCheck
sale Forte reports returned (``rejected``: the bank sent the debit back before Forte
funded it) was never recorded as paid (an unfunded eCheck is pending): the job fails for
a person (failed list, trail, metric), and the invoice is left as it is.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

import httpx
from redis import Redis

from payhooks.domain.events import InvoiceRef, PaymentEvent, PaymentKind
from payhooks.domain.paid_dates import paid_date
from payhooks.providers.forte.formats import (
    APPROVED,
    PROVIDER,
    listed_event_id,
    payment_method,
    received_at,
    sale_kind,
)
from payhooks.providers.forte.settings import ForteSettings
from payhooks.providers.kit.provider_api import ProviderApi
from payhooks.providers.kit.section_step import SectionStep
from payhooks.providers.kit.step_errors import ProviderLookupError, ProviderLookupUnavailable
from payhooks.settings import Settings
from payhooks.storage.record_once import recorded
from payhooks.storage.trail import Trail

CREDENTIALS = "FORTE_API_ACCESS_ID, FORTE_API_SECURE_KEY and FORTE_ORGANIZATION_ID"


API = ProviderApi("Forte's API", credentials=CREDENTIALS)


class EcheckReturned(ProviderLookupError):
    """Forte reports an eCheck sale returned before it was funded: a person follows it up."""


class ForteStep(SectionStep[ForteSettings]):
    SECTION = ForteSettings

    def __init__(
        self, section: ForteSettings, redis: Redis | None = None, trail: Trail | None = None
    ) -> None:
        super().__init__(section)
        self._redis = redis
        self._trail = trail

    @classmethod
    def from_settings(cls, settings: Settings, redis: Redis, trail: Trail) -> ForteStep:
        return cls(settings.provider(ForteSettings), redis, trail)

    def __call__(self, event: PaymentEvent) -> PaymentEvent:
        location = event.details.get("location", "")
        transaction = self._fetch(location, event.token)
        if transaction.get("action") != "sale":
            raise ProviderLookupError(
                f"Forte transaction {event.token} is a {transaction.get('action')!r}, not a "
                "sale: nothing recorded"
            )
        status = str(transaction.get("status") or "")
        self._mark_listed(event, status.lower())
        if status.lower() == "rejected":
            raise EcheckReturned(
                f"Forte returned eCheck sale {event.token} (order "
                f"{str(transaction.get('order_number'))[:50]!r}): the bank sent the debit "
                "back before Forte funded it. payhooks never recorded it as paid, and the "
                "invoice is left as it is: ask the member for another payment, then dismiss"
            )
        method = payment_method(transaction)
        kind = sale_kind(status, method)
        if kind is None:
            raise ProviderLookupError(
                f"Forte transaction {event.token} has status {status[:40]!r}, which payhooks "
                f"cannot read for {method or 'a payment neither card nor eCheck'}: nothing "
                "recorded"
            )
        code = (transaction.get("response") or {}).get("response_code")
        if kind is PaymentKind.PAID and code != APPROVED:
            raise ProviderLookupError(
                f"Forte transaction {event.token} is {status} with response code "
                f"{str(code)[:10]!r}, not {APPROVED} (approved): nothing recorded"
            )
        return event.with_changes(
            kind=kind,
            invoice=InvoiceRef.from_text(str(transaction.get("order_number") or "")),
            amount=_amount(event.token, transaction.get("authorization_amount"), kind),
            currency=self._settings.currency,
            payment_method=method,
            # When Forte received it, by Forte's record (the webhook's date is a hint).
            occurred_at=_paid_at(transaction.get("received_date"), event),
        )

    def _mark_listed(self, event: PaymentEvent, status: str) -> None:
        """The sale in ``status`` is this job's: a reconcile scan that lists it queues no
        second job (its trail says queued, by this event)."""
        if self._redis is None or self._trail is None:
            return
        listed = f"{PROVIDER}:{listed_event_id(event.token, status)}"
        # Once: not again on a retry, nor on a listed event a scan queued itself.
        if listed != event.key and not recorded(self._redis, [listed])[0]:
            self._trail.append(listed, "enqueued", by=event.key)

    def _fetch(self, location: str, transaction_id: str) -> dict[str, Any]:
        section = self._settings
        organization = section.organization_id
        response = forte_get(section, f"/locations/{location}/transactions/{transaction_id}")
        if response.status_code == 404:
            # Forte may answer before the transaction is readable; a forged id ends failed.
            raise ProviderLookupUnavailable(
                f"Forte has no transaction {transaction_id} at {location} (yet)"
            )
        transaction = json_of(response, "Forte's API")
        if response.status_code != 200 or not isinstance(transaction, dict):
            answer = transaction.get("response") if isinstance(transaction, dict) else None
            desc = answer.get("response_desc", "") if isinstance(answer, dict) else ""
            raise ProviderLookupError(
                f"Forte's API refused the lookup of {transaction_id} ({response.status_code}: "
                f"{str(desc)[:200]})"
            )
        # The id was in the URL; an answer about another transaction or organization is
        # not an answer about this one.
        if (
            transaction.get("transaction_id") != transaction_id
            or transaction.get("organization_id", organization) != organization
        ):
            raise ProviderLookupError(
                f"Forte's API answered for another transaction than {transaction_id}"
            )
        return transaction


def forte_get(
    section: ForteSettings, path: str, params: dict[str, str] | None = None
) -> httpx.Response:
    """``GET {api}/organizations/{org}{path}`` with Forte's credentials (HTTP Basic and the
    organization header); its failures classified by ``API``."""
    organization = section.organization_id
    if not (organization and section.api_access_id and section.api_secure_key):
        raise ProviderLookupError(f"{CREDENTIALS} are needed to read Forte's transactions")
    return API.send(
        "GET",
        f"{section.api_url}/organizations/{organization}{path}",
        params=params,
        auth=(section.api_access_id, section.api_secure_key),
        headers={"X-Forte-Auth-Organization-Id": organization, "Accept": "application/json"},
    )


def json_of(response: httpx.Response, what: str) -> Any:
    """The answer's JSON; an answer without any is a transient failure (a proxy's page)."""
    try:
        return response.json()
    except ValueError:
        raise ProviderLookupUnavailable(
            f"{what} answered {response.status_code} without JSON"
        ) from None


def _amount(transaction_id: str, value: object, kind: PaymentKind) -> Decimal | None:
    """The money moved; required where money is recorded (paid, refunded)."""
    try:
        amount = Decimal(str(value))
    except InvalidOperation:
        amount = Decimal("NaN")
    if value is not None and not isinstance(value, bool) and amount.is_finite() and amount > 0:
        return amount
    if kind in (PaymentKind.PAID, PaymentKind.REFUNDED):
        raise ProviderLookupError(
            f"Forte transaction {transaction_id} has no readable authorization_amount"
        )
    return None


def _paid_at(recorded: object, event: PaymentEvent) -> datetime:
    """Forte's date of the sale; if its record has none we can believe (unreadable, or
    ahead of our clock by more than a day), the webhook's, else the time it is applied."""
    return paid_date(received_at(recorded), event.occurred_at, now=datetime.now(tz=UTC))
