"""Braintree's settings section."""

from __future__ import annotations

from dataclasses import dataclass

from payhooks.settings.provider import ProviderSettings
from payhooks.settings.reading import ConfigError, Rows, choice, count, pairs, setting


@dataclass(frozen=True, slots=True)
class BraintreeSettings(ProviderSettings):
    ENABLED_BY = "keys"

    keys: tuple[tuple[str, str], ...] = setting("BRAINTREE_KEYS", (), pairs, secret=True)
    merchant_id: str | None = setting("BRAINTREE_MERCHANT_ID")
    environment: str = setting(
        "BRAINTREE_ENVIRONMENT", "production", choice("production", "sandbox")
    )
    invoice_field: str | None = setting("BRAINTREE_INVOICE_FIELD")

    def check(self) -> None:
        if self.keys and not self.merchant_id:
            raise ConfigError("BRAINTREE_MERCHANT_ID is required with BRAINTREE_KEYS")

    def rows(self) -> Rows:
        return [
            ("key pairs", count(self.keys)),
            ("merchant id", self.merchant_id or "not set"),
            ("environment", self.environment),
            ("invoice field", self.invoice_field or "order_id"),
        ]
