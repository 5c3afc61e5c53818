"""Forte's `check-config --probe` row: its credentials are listed, not called."""

from __future__ import annotations

import httpx

from payhooks.providers.forte.settings import ForteSettings
from payhooks.providers.kit.probes import Check, ProbeResult


def checks(section: ForteSettings, http: httpx.Client) -> list[Check]:
    """Listed, not called: Forte documents no read-only call that needs no location, and
    its locations are named only by its webhooks."""
    if not (section.api_access_id and section.api_secure_key):
        return []
    target = "Forte API credentials"
    detail = "not called: no read-only Forte call without a location; each job's lookup checks them"
    return [(target, lambda: ProbeResult(target, False, detail, skipped=True))]
