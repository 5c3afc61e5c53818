"""Stripe's `check-config --probe` call: read a PaymentIntent nobody has with the API key."""

from __future__ import annotations

from functools import partial

import httpx

from payhooks.providers.kit.probes import PROBE_ID, Check, ProbeResult, unknown_id_lookup
from payhooks.providers.stripe.settings import StripeSettings

STRIPE_API = "https://api.stripe.com"


def checks(section: StripeSettings, http: httpx.Client) -> list[Check]:
    if not section.api_key:
        return []
    return [("Stripe API key", partial(_stripe, section, http))]


def _stripe(section: StripeSettings, http: httpx.Client) -> ProbeResult:
    base = section.api_base or STRIPE_API
    return unknown_id_lookup(
        http,
        "Stripe API key",
        f"{base}/v1/payment_intents/{PROBE_ID}",
        {"Authorization": f"Bearer {section.api_key}"},
        accepted=f"{base} accepted the key",
        refused={401: "key refused", 403: "the key may not read PaymentIntents"},
    )
