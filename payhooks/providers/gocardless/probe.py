"""GoCardless's `check-config --probe` call: read a payment nobody has with the token."""

from __future__ import annotations

from functools import partial

import httpx

from payhooks.providers.gocardless.settings import GoCardlessSettings
from payhooks.providers.kit.probes import PROBE_ID, Check, ProbeResult, unknown_id_lookup

GOCARDLESS_API = {
    "live": "https://api.gocardless.com",
    "sandbox": "https://api-sandbox.gocardless.com",
}
GOCARDLESS_VERSION = "2015-07-06"


def checks(section: GoCardlessSettings, http: httpx.Client) -> list[Check]:
    if not section.access_token:
        return []
    return [("GoCardless access token", partial(_gocardless, section, http))]


def _gocardless(section: GoCardlessSettings, http: httpx.Client) -> ProbeResult:
    base = section.base_url or GOCARDLESS_API[section.environment]
    return unknown_id_lookup(
        http,
        "GoCardless access token",
        f"{base}/payments/{PROBE_ID}",
        {
            "Authorization": f"Bearer {section.access_token}",
            "GoCardless-Version": GOCARDLESS_VERSION,
            "Accept": "application/json",
        },
        accepted=f"{base} accepted the token",
        refused={401: "token refused", 403: "token may not read payments"},
    )
