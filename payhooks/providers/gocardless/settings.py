"""GoCardless's settings section."""

from __future__ import annotations

from dataclasses import dataclass

from payhooks.settings.provider import ProviderSettings
from payhooks.settings.reading import Rows, choice, count, is_set, items, setting, url


@dataclass(frozen=True, slots=True)
class GoCardlessSettings(ProviderSettings):
    ENABLED_BY = "webhook_secrets"
    WORKER_NEEDS = ("access_token",)

    webhook_secrets: tuple[str, ...] = setting("GOCARDLESS_WEBHOOK_SECRETS", (), items, secret=True)
    access_token: str | None = setting("GOCARDLESS_ACCESS_TOKEN", secret=True)
    environment: str = setting("GOCARDLESS_ENVIRONMENT", "live", choice("live", "sandbox"))
    base_url: str | None = setting("GOCARDLESS_BASE_URL", None, url)
    paid_action: str = setting(
        "GOCARDLESS_PAID_ACTION", "confirmed", choice("confirmed", "paid_out")
    )

    def rows(self) -> Rows:
        return [
            ("webhook secrets", count(self.webhook_secrets)),
            ("access token", is_set(self.access_token)),
            ("API", self.base_url or self.environment),
            ("paid on", self.paid_action),
        ]
