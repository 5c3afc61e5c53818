"""Forte's settings section.

Forte signs no webhook, so its URL carries a secret of ours (``/webhooks/forte/<token>``)
and the job confirms every transaction with Forte's REST API before money is recorded.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from payhooks.settings.provider import ProviderSettings
from payhooks.settings.reading import (
    ConfigError,
    Rows,
    count,
    currency_code,
    is_set,
    items,
    require_https,
    setting,
    url,
    url_tokens,
)


@dataclass(frozen=True, slots=True)
class ForteSettings(ProviderSettings):
    ENABLED_BY = "webhook_tokens"
    WORKER_NEEDS = ("organization_id", "api_access_id", "api_secure_key")

    webhook_tokens: tuple[str, ...] = setting("FORTE_WEBHOOK_TOKENS", (), url_tokens, secret=True)
    organization_id: str | None = setting("FORTE_ORGANIZATION_ID")
    api_access_id: str | None = setting("FORTE_API_ACCESS_ID", secret=True)
    api_secure_key: str | None = setting("FORTE_API_SECURE_KEY", secret=True)
    api_url: str = setting("FORTE_API_URL", "https://api.forte.net/v3", url)
    #: Forte's transactions carry no currency: a location is in US dollars (or, rarely, CAD).
    currency: str = setting("FORTE_CURRENCY", "USD", currency_code)
    #: The locations reconciliation reads (Forte lists transactions per location).
    location_ids: tuple[str, ...] = setting("FORTE_LOCATION_IDS", (), items)

    def check(self) -> None:
        if self.organization_id and not re.fullmatch(r"org_\d+", self.organization_id):
            raise ConfigError(
                "FORTE_ORGANIZATION_ID must be Forte's organization id: org_ and digits, "
                "such as org_300005"
            )
        if not all(re.fullmatch(r"loc_\d+", location) for location in self.location_ids):
            raise ConfigError(
                "FORTE_LOCATION_IDS takes Forte's location ids, comma-separated: loc_ and "
                "digits, such as loc_191620"
            )
        # Every call carries the API secure key (HTTP Basic).
        require_https("FORTE_API_URL", self.api_url)

    def rows(self) -> Rows:
        return [
            ("URL tokens", count(self.webhook_tokens)),
            ("organization", self.organization_id or "not set"),
            ("API access id", is_set(self.api_access_id)),
            ("API secure key", is_set(self.api_secure_key)),
            ("API", self.api_url),
            ("currency", self.currency),
            ("locations reconciled", ", ".join(self.location_ids) or "none"),
        ]
