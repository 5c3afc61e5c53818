"""ePay's settings section."""

from __future__ import annotations

from dataclasses import dataclass

from payhooks.settings.provider import ProviderSettings
from payhooks.settings.reading import Rows, count, is_set, items, setting, url


@dataclass(frozen=True, slots=True)
class EPaySettings(ProviderSettings):
    ENABLED_BY = "md5_secrets"
    WORKER_NEEDS = ("merchant_number",)

    md5_secrets: tuple[str, ...] = setting("EPAY_MD5_SECRETS", (), items, secret=True)
    merchant_number: str | None = setting("EPAY_MERCHANT_NUMBER")
    api_password: str | None = setting("EPAY_API_PASSWORD", secret=True)
    api_url: str = setting(
        "EPAY_API_URL", "https://ssl.ditonlinebetalingssystem.dk/remote/payment.asmx", url
    )

    def rows(self) -> Rows:
        return [
            ("MD5 secrets", count(self.md5_secrets)),
            ("merchant number", self.merchant_number or "not set"),
            ("API password", is_set(self.api_password)),
            ("API", self.api_url),
        ]
