"""Reads a Spreedly transaction back from its API before anything is recorded.

The callback's signature proves Spreedly sent the token; what the transaction is (type,
state), its money (``amount`` in minor units of ``currency_code``), its invoice
(``order_id``) and whether it ran on Spreedly's test gateway are taken from
``GET {api}/v1/transactions/{token}.json`` (HTTP Basic: environment key, access secret;
docs.spreedly.com/reference/api/v1/transactions/show), never from the callback. A credit
returns the money of the purchase its ``reference_token`` names.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from payhooks.domain.events import InvoiceRef, PaymentEvent, PaymentKind
from payhooks.domain.paid_dates import paid_date
from payhooks.providers.kit.provider_api import ProviderApi
from payhooks.providers.kit.section_step import SectionStep
from payhooks.providers.kit.step_errors import ProviderLookupError, ProviderLookupUnavailable
from payhooks.providers.spreedly.formats import (
    CREDITS,
    amount_of,
    callback_time,
    kind_of,
)
from payhooks.providers.spreedly.settings import SpreedlySettings

CREDENTIALS = "SPREEDLY_ENVIRONMENT_KEY and SPREEDLY_ACCESS_SECRET"
API = ProviderApi("Spreedly's API", credentials=CREDENTIALS)


class SpreedlyStep(SectionStep[SpreedlySettings]):
    SECTION = SpreedlySettings

    def __call__(self, event: PaymentEvent) -> PaymentEvent:
        token = event.object_id
        record = read_transaction(self._settings, token)
        if record is None:
            raise ProviderLookupUnavailable(f"Spreedly has no transaction {token} (yet)")
        return confirmed_event(event, record, self._settings)


def read_transaction(section: SpreedlySettings, token: str) -> dict[str, Any] | None:
    """``GET /v1/transactions/{token}.json``'s transaction; None when Spreedly has none
    (404). Raises as ``ProviderApi.send`` does, and ``ProviderLookupError`` for an answer
    that is not that transaction."""
    if not (section.environment_key and section.access_secret):
        raise ProviderLookupError(f"{CREDENTIALS} are needed to confirm Spreedly transactions")
    response = API.send(
        "GET",
        f"{section.api_url.rstrip('/')}/v1/transactions/{token}.json",
        auth=(section.environment_key, section.access_secret),
        headers={"Accept": "application/json"},
    )
    if response.status_code == 404:
        return None
    try:
        answer = response.json()
    except ValueError:
        raise ProviderLookupUnavailable(
            f"Spreedly's API answered {response.status_code} without JSON"
        ) from None
    record = answer.get("transaction") if isinstance(answer, dict) else None
    if response.status_code != 200 or not isinstance(record, dict):
        raise ProviderLookupError(
            f"Spreedly's API refused the lookup of {token} ({response.status_code})"
        )
    if record.get("token") != token:
        raise ProviderLookupError(f"Spreedly's API answered for another transaction than {token}")
    return record


def confirmed_event(
    event: PaymentEvent, record: dict[str, Any], settings: SpreedlySettings
) -> PaymentEvent:
    """``event`` as Spreedly's own record of its transaction says it is (the API's answer
    to the step's lookup, or the same record in its transactions list); pure. Raises
    ``ProviderLookupError`` for a record payhooks must not record money from."""
    transaction_type = str(record.get("transaction_type") or "")
    state = str(record.get("state") or "")
    if transaction_type != event.details.get("transaction_type"):
        raise ProviderLookupError(
            f"Spreedly's API says transaction {event.object_id} is a "
            f"{transaction_type[:40]!r}, not what its callback said: nothing recorded"
        )
    if record.get("on_test_gateway") is not False and not settings.allow_test_gateway:
        raise ProviderLookupError(
            f"Spreedly transaction {event.object_id} ran on the test gateway (no money): "
            "nothing recorded (SPREEDLY_ALLOW_TEST_GATEWAY=true applies such transactions)"
        )
    kind = kind_of(transaction_type, state, record.get("succeeded") is True)
    if kind is None:
        raise ProviderLookupError(
            f"Spreedly transaction {event.object_id} is {transaction_type} in state "
            f"{state[:40]!r}, which payhooks cannot read: nothing recorded"
        )
    money = amount_of(record)
    if money is None and kind in (PaymentKind.PAID, PaymentKind.REFUNDED):
        raise ProviderLookupError(
            f"Spreedly transaction {event.object_id} has no readable amount and currency"
        )
    token = event.token
    if kind is PaymentKind.REFUNDED and transaction_type in CREDITS:
        token = str(record.get("reference_token") or "")
        if not token:
            raise ProviderLookupError(
                f"Spreedly {transaction_type} {event.object_id} names no purchase "
                "(reference_token): find the payment it returns"
            )
    when = callback_time(record.get("updated_at") or record.get("created_at"))
    return event.with_changes(
        kind=kind,
        token=token,
        invoice=InvoiceRef.from_text(str(record.get("order_id") or "")),
        amount=None if money is None else money[0],
        currency=None if money is None else money[1],
        occurred_at=paid_date(when, event.occurred_at, now=datetime.now(tz=UTC)),
        payment_method=_payment_method(record),
    )


def _payment_method(record: dict[str, Any]) -> str | None:
    method = record.get("payment_method")
    kind = method.get("payment_method_type") if isinstance(method, dict) else None
    return str(kind)[:40] if kind else None
