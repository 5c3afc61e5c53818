"""Completes a GoCardless payment event from the GoCardless API.

A webhook names only the payment; its amount (minor units), currency, metadata (the
Nexudus invoice id under INVOICE_METADATA_KEY), reference and mandate come from
``GET /payments/{id}``, with the official ``gocardless-pro`` client. A refund event names
only the refund: ``GET /refunds/{id}`` gives the payment it undoes (the token, so the
refund carries the paid event's token) and the amount refunded.
"""

from __future__ import annotations

from typing import Any

import gocardless_pro
from gocardless_pro import errors
from redis import Redis
from requests.exceptions import ConnectionError as RequestsConnectionError
from requests.exceptions import Timeout

from payhooks.domain.events import InvoiceRef, PaymentEvent
from payhooks.domain.money import from_minor_units
from payhooks.providers.gocardless.settings import GoCardlessSettings
from payhooks.providers.kit.step_errors import ProviderLookupError, ProviderLookupUnavailable
from payhooks.settings import Settings
from payhooks.storage.trail import Trail

#: What the SDK raises when asking again later may work (a 429 is told apart by each caller).
UNAVAILABLE: tuple[type[Exception], ...] = (
    errors.GoCardlessInternalError,
    errors.MalformedResponseError,
    Timeout,
    RequestsConnectionError,
)
#: The access token refused, or not allowed to read this.
REFUSED: tuple[type[Exception], ...] = (errors.AuthenticationError, errors.PermissionsError)


def client_for(section: GoCardlessSettings, access_token: str) -> gocardless_pro.Client:
    """The official client, at the configured base URL or else the environment's."""
    return gocardless_pro.Client(
        access_token=access_token,
        environment=None if section.base_url else section.environment,
        base_url=section.base_url,
    )


class GoCardlessStep:
    def __init__(self, section: GoCardlessSettings, *, invoice_metadata_key: str) -> None:
        self._settings = section
        self._invoice_metadata_key = invoice_metadata_key

    @classmethod
    def from_settings(cls, settings: Settings, redis: Redis, trail: Trail) -> GoCardlessStep:
        return cls(
            settings.provider(GoCardlessSettings),
            invoice_metadata_key=settings.invoice_metadata_key,
        )

    def __call__(self, event: PaymentEvent) -> PaymentEvent:
        # Refund events queued before refunds were read name the refund as their token.
        refund_id = event.details.get("refund") or (
            event.token if event.token.startswith("RF") else None
        )
        if refund_id:
            return self._refund(event, refund_id)
        return self._payment(event)

    def _refund(self, event: PaymentEvent, refund_id: str) -> PaymentEvent:
        refund = self._fetch("refunds", refund_id)
        payment_id = (refund.get("links") or {}).get("payment")
        if not payment_id:
            raise ProviderLookupError(f"GoCardless refund {refund_id} names no payment")
        paid = self._payment(event.with_changes(token=str(payment_id)))
        # The payment gave the invoice and mandate; the money is the refund's, not the
        # payment's (a refund may be partial). GoCardless states it positive.
        currency = str(refund["currency"]).upper()
        return paid.with_changes(
            amount=abs(from_minor_units(int(refund["amount"]), currency)), currency=currency
        )

    def _payment(self, event: PaymentEvent) -> PaymentEvent:
        payment = self._fetch("payments", event.token)
        metadata = payment.get("metadata") or {}
        links = payment.get("links") or {}
        invoice = event.invoice
        if not invoice:
            # The payment reference is bank-statement text: a number, never an Id.
            reference = str(payment.get("reference") or "").strip()
            invoice = InvoiceRef.from_text(
                str(metadata.get(self._invoice_metadata_key, ""))
            ) or InvoiceRef(number=reference or None)
        details = dict(event.details)
        if links.get("mandate"):
            details["mandate"] = str(links["mandate"])
        currency = str(payment["currency"]).upper()
        return event.with_changes(
            invoice=invoice,
            amount=from_minor_units(int(payment["amount"]), currency),
            currency=currency,
            details=details,
        )

    def _fetch(self, resource: str, object_id: str) -> dict[str, Any]:
        """``GET /payments/{id}`` or ``GET /refunds/{id}``, errors made ours."""
        what = resource.removesuffix("s")
        if not self._settings.access_token:
            raise ProviderLookupError(
                f"GOCARDLESS_ACCESS_TOKEN is not set, so the {what} cannot be read"
            )
        client = client_for(self._settings, self._settings.access_token)
        try:
            found = getattr(client, resource).get(object_id)
        except (errors.RateLimitError, *UNAVAILABLE) as exc:
            raise ProviderLookupUnavailable(
                f"GoCardless API unavailable ({exc.__class__.__name__})"
            ) from None
        except REFUSED as exc:
            raise ProviderLookupError(
                f"GoCardless refused GOCARDLESS_ACCESS_TOKEN ({exc.__class__.__name__})"
            ) from None
        except errors.ApiError as exc:
            if exc.code == 404:
                raise ProviderLookupError(
                    f"GoCardless has no {what} {object_id} (is GOCARDLESS_ENVIRONMENT right?)"
                ) from None
            raise ProviderLookupError(f"GoCardless rejected the lookup: {exc.message}") from None
        attributes: dict[str, Any] = dict(found.attributes)
        return attributes
