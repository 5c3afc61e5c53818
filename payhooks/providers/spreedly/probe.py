"""Spreedly's `check-config --probe` call: read a transaction nobody has."""

from __future__ import annotations

import base64
from functools import partial

import httpx

from payhooks.providers.kit.probes import PROBE_ID, Check, ProbeResult, unknown_id_lookup
from payhooks.providers.spreedly.settings import SpreedlySettings

TARGET = "Spreedly environment key and access secret"


def checks(section: SpreedlySettings, http: httpx.Client) -> list[Check]:
    if not (section.environment_key and section.access_secret):
        return []
    return [(TARGET, partial(_spreedly, section, http))]


def _spreedly(section: SpreedlySettings, http: httpx.Client) -> ProbeResult:
    basic = base64.b64encode(f"{section.environment_key}:{section.access_secret}".encode())
    base = section.api_url.rstrip("/")
    return unknown_id_lookup(
        http,
        TARGET,
        f"{base}/v1/transactions/{PROBE_ID}.json",
        {"Authorization": f"Basic {basic.decode()}", "Accept": "application/json"},
        accepted=f"{base} accepted the credentials",
        refused={401: "credentials refused", 403: "credentials may not read transactions"},
    )
