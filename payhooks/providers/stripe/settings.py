"""Stripe's settings section."""

from __future__ import annotations

from dataclasses import dataclass

from payhooks.settings.provider import ProviderSettings
from payhooks.settings.reading import Rows, count, flag, is_set, items, setting, url, whole


@dataclass(frozen=True, slots=True)
class StripeSettings(ProviderSettings):
    ENABLED_BY = "webhook_secrets"

    webhook_secrets: tuple[str, ...] = setting("STRIPE_WEBHOOK_SECRETS", (), items, secret=True)
    api_key: str | None = setting("STRIPE_API_KEY", secret=True)
    api_base: str | None = setting("STRIPE_API_BASE", None, url)
    tolerance_seconds: int = setting("STRIPE_TOLERANCE_SECONDS", 300, whole(minimum=1))
    #: Apply events with ``livemode: false``; only for development and test endpoints.
    allow_test_mode: bool = setting("STRIPE_ALLOW_TEST_MODE", False, flag)

    def rows(self) -> Rows:
        return [
            ("webhook secrets", count(self.webhook_secrets)),
            ("signature tolerance", f"{self.tolerance_seconds} s"),
            ("API key", is_set(self.api_key)),
            ("API", self.api_base or "Stripe's"),
        ]
