"""Authorize.Net's settings section."""

from __future__ import annotations

from dataclasses import dataclass

from payhooks.settings.provider import ProviderSettings
from payhooks.settings.reading import Rows, count, currency_code, is_set, items, setting, url


@dataclass(frozen=True, slots=True)
class AuthorizeNetSettings(ProviderSettings):
    ENABLED_BY = "signature_keys"
    WORKER_NEEDS = ("login_id", "transaction_key")

    signature_keys: tuple[str, ...] = setting("AUTHORIZENET_SIGNATURE_KEYS", (), items, secret=True)
    login_id: str | None = setting("AUTHORIZENET_LOGIN_ID", secret=True)
    transaction_key: str | None = setting("AUTHORIZENET_TRANSACTION_KEY", secret=True)
    api_url: str = setting(
        "AUTHORIZENET_API_URL", "https://api.authorize.net/xml/v1/request.api", url
    )
    currency: str = setting("AUTHORIZENET_CURRENCY", "USD", currency_code)

    def rows(self) -> Rows:
        return [
            ("signature keys", count(self.signature_keys)),
            ("API login id", is_set(self.login_id)),
            ("transaction key", is_set(self.transaction_key)),
            ("API", self.api_url),
            ("currency", self.currency),
        ]
