"""Braintree's `check-config --probe` calls: list the merchant's plans with each key pair."""

from __future__ import annotations

from functools import partial

import httpx

from payhooks.providers.braintree.settings import BraintreeSettings
from payhooks.providers.kit.probes import Check, ProbeResult, by_status

BRAINTREE_API = {
    "production": "https://api.braintreegateway.com",
    "sandbox": "https://api.sandbox.braintreegateway.com",
}


def checks(section: BraintreeSettings, http: httpx.Client) -> list[Check]:
    return [
        (
            f"Braintree key {number}",
            partial(_braintree, section, http, pair, f"Braintree key {number}"),
        )
        for number, pair in enumerate(section.keys, start=1)
    ]


def _braintree(
    section: BraintreeSettings, http: httpx.Client, pair: tuple[str, str], target: str
) -> ProbeResult:
    from payhooks.providers.braintree import sample as samples

    if pair == (samples.DEV_PUBLIC_KEY, samples.DEV_PRIVATE_KEY):
        # `payhooks dev` signs its sample notifications with these; Braintree never saw them.
        return ProbeResult(target, False, "the dev sample keys: nothing to call", skipped=True)
    base = BRAINTREE_API[section.environment]
    merchant = section.merchant_id or ""
    answer = http.get(
        f"{base}/merchants/{merchant}/plans",
        auth=pair,
        headers={"X-ApiVersion": "6", "Accept": "application/xml"},
    )
    return by_status(
        target,
        answer,
        ok={200: f"{base} listed plans of merchant {merchant}"},
        refused={
            401: "keys refused",
            403: "the keys may not read plans",
            404: f"no merchant {merchant} for these keys",
        },
    )
