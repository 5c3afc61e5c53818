"""Which Stripe payment method paid: asked of the Stripe API when the webhook did not say.

A PaymentIntent event carries only ids for its charge and payment method, and
``payment_method_types`` lists every allowed type, so card, ACH and BACS can only be
told apart by retrieving the PaymentIntent with its latest charge.
"""

from __future__ import annotations

import logging
from typing import Any

import stripe

from payhooks.events import PaymentEvent, RegularPaymentProvider
from service.providers.stripe import provider_for_method
from workers.errors import ProviderLookupError, ProviderLookupUnavailable

log = logging.getLogger("payhooks.stripe")


class StripePaymentMethodLookup:
    def __init__(self, api_key: str | None, api_base: str | None = None) -> None:
        self._api_key = api_key
        self._api_base = api_base

    def __call__(self, event: PaymentEvent) -> PaymentEvent:
        if event.regular_payment_provider is not None:
            return event
        if not self._api_key:
            log.warning("stripe.method_unknown", extra={"event_id": event.event_id})
            return event.with_changes(
                regular_payment_provider=RegularPaymentProvider.STRIPE,
                payment_method="unknown (no STRIPE_API_KEY to look it up)",
            )
        method = self._lookup(event.token)
        return event.with_changes(
            regular_payment_provider=provider_for_method(method)
            if method
            else RegularPaymentProvider.STRIPE,
            payment_method=method or "unknown",
        )

    def _lookup(self, token: str) -> str | None:
        client = stripe.StripeClient(
            self._api_key or "",
            base_addresses={"api": self._api_base} if self._api_base else None,
            max_network_retries=1,
        )
        try:
            if token.startswith("pi_"):
                intent = client.v1.payment_intents.retrieve(
                    token, params={"expand": ["latest_charge"]}
                )
                return _method_of(intent.to_dict().get("latest_charge"))
            if token.startswith(("ch_", "py_")):
                return _method_of(client.v1.charges.retrieve(token).to_dict())
        except (stripe.APIConnectionError, stripe.RateLimitError) as exc:
            raise ProviderLookupUnavailable(
                f"Stripe API unavailable: {exc.__class__.__name__}"
            ) from None
        except stripe.InvalidRequestError as exc:
            raise ProviderLookupError(
                f"Stripe could not find {token} with STRIPE_API_KEY ({exc.code or 'invalid request'});"
                " is the key for the same Stripe account as the webhook secret?"
            ) from None
        except stripe.AuthenticationError:
            raise ProviderLookupError("Stripe rejected STRIPE_API_KEY") from None
        except stripe.APIError as exc:
            raise ProviderLookupUnavailable(f"Stripe API error: {exc.__class__.__name__}") from None
        return None


def _method_of(charge: Any) -> str | None:
    if not isinstance(charge, dict):
        return None
    details = charge.get("payment_method_details")
    if details and isinstance(details.get("type"), str):
        return str(details["type"])
    return None
