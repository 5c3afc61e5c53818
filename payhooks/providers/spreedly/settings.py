"""Spreedly's settings section.

``SPREEDLY_SIGNING_SECRETS`` (several, for rotation) turns on ``/webhooks/spreedly``; the
job confirms every transaction with Spreedly's API (``SPREEDLY_ENVIRONMENT_KEY``,
``SPREEDLY_ACCESS_SECRET``). Nexudus's value for Spreedly's payments is our reading of its
gateway pages (MultiGateway, 1), so it is a setting.
"""

from __future__ import annotations

from dataclasses import dataclass

from payhooks.domain.events import RegularPaymentProvider
from payhooks.settings.provider import ProviderSettings
from payhooks.settings.reading import (
    ConfigError,
    Rows,
    count,
    flag,
    is_set,
    items,
    require_https,
    setting,
    url,
    whole,
)


@dataclass(frozen=True, slots=True)
class SpreedlySettings(ProviderSettings):
    ENABLED_BY = "signing_secrets"
    WORKER_NEEDS = ("environment_key", "access_secret")

    signing_secrets: tuple[str, ...] = setting("SPREEDLY_SIGNING_SECRETS", (), items, secret=True)
    environment_key: str | None = setting("SPREEDLY_ENVIRONMENT_KEY")
    access_secret: str | None = setting("SPREEDLY_ACCESS_SECRET", secret=True)
    api_url: str = setting("SPREEDLY_API_URL", "https://core.spreedly.com", url)
    provider_value: int = setting(
        "SPREEDLY_PROVIDER_VALUE", int(RegularPaymentProvider.MULTI_GATEWAY), whole(minimum=1)
    )
    #: Transactions on Spreedly's test gateway are no money; applied only when this is set.
    allow_test_gateway: bool = setting("SPREEDLY_ALLOW_TEST_GATEWAY", False, flag)

    def check(self) -> None:
        if self.provider_value not in set(RegularPaymentProvider):
            raise ConfigError(
                "SPREEDLY_PROVIDER_VALUE must be a Nexudus eRegularPaymentProvider value "
                f"(1 MultiGateway), got {self.provider_value}"
            )
        # Every call carries the access secret (HTTP Basic).
        require_https("SPREEDLY_API_URL", self.api_url)

    def rows(self) -> Rows:
        return [
            ("signing secrets", count(self.signing_secrets)),
            ("environment key", is_set(self.environment_key)),
            ("access secret", is_set(self.access_secret)),
            ("API", self.api_url),
            ("provider value", str(self.provider_value)),
            ("test gateway", "applied" if self.allow_test_gateway else "refused"),
        ]
