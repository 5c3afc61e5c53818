"""Braintree's settings section."""

from __future__ import annotations

from dataclasses import dataclass

from payhooks.settings.provider import ProviderSettings
from payhooks.settings.reading import (
    ConfigError,
    Rows,
    choice,
    count,
    pairs,
    require_https,
    setting,
    url,
)


@dataclass(frozen=True, slots=True)
class BraintreeSettings(ProviderSettings):
    ENABLED_BY = "keys"

    keys: tuple[tuple[str, str], ...] = setting("BRAINTREE_KEYS", (), pairs, secret=True)
    merchant_id: str | None = setting("BRAINTREE_MERCHANT_ID")
    environment: str = setting(
        "BRAINTREE_ENVIRONMENT", "production", choice("production", "sandbox")
    )
    invoice_field: str | None = setting("BRAINTREE_INVOICE_FIELD")
    #: Where the SDK sends API calls instead of BRAINTREE_ENVIRONMENT's gateway (the dev
    #: sandbox's stand-in); reconciliation's transaction search is the only caller.
    api_url: str | None = setting("BRAINTREE_API_URL", None, url)

    def check(self) -> None:
        if self.keys and not self.merchant_id:
            raise ConfigError("BRAINTREE_MERCHANT_ID is required with BRAINTREE_KEYS")
        if self.api_url:
            require_https("BRAINTREE_API_URL", self.api_url)

    def rows(self) -> Rows:
        return [
            ("key pairs", count(self.keys)),
            ("merchant id", self.merchant_id or "not set"),
            ("environment", self.environment),
            ("invoice field", self.invoice_field or "order_id"),
            ("API", self.api_url or f"Braintree's {self.environment} gateway"),
        ]
