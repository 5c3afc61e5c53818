"""PayPal's `check-config --probe` call: ask for an OAuth access token (read-only: it
grants nothing and changes nothing; the reconcile scan asks for the same)."""

from __future__ import annotations

from functools import partial

import httpx

from payhooks.providers.kit.probes import Check, ProbeResult, by_status
from payhooks.providers.paypal.oauth import TOKEN_PATH
from payhooks.providers.paypal.settings import PayPalSettings

TARGET = "PayPal REST client id and secret"


def checks(section: PayPalSettings, http: httpx.Client) -> list[Check]:
    if not (section.client_id and section.client_secret):
        return []
    return [(TARGET, partial(_paypal, section, http))]


def _paypal(section: PayPalSettings, http: httpx.Client) -> ProbeResult:
    base = section.api_base.rstrip("/")
    answer = http.post(
        base + TOKEN_PATH,
        auth=(section.client_id or "", section.client_secret or ""),
        data={"grant_type": "client_credentials"},
        headers={"Accept": "application/json"},
    )
    return by_status(
        TARGET,
        answer,
        ok={200: f"{base} issued an access token"},
        refused={401: "client id or secret refused", 403: "the app may not use the REST API"},
    )
