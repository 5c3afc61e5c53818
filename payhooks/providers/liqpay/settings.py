"""LiqPay's settings section."""

from __future__ import annotations

from dataclasses import dataclass

from payhooks.settings.provider import ProviderSettings
from payhooks.settings.reading import Rows, count, flag, items, setting


@dataclass(frozen=True, slots=True)
class LiqPaySettings(ProviderSettings):
    ENABLED_BY = "private_keys"

    private_keys: tuple[str, ...] = setting("LIQPAY_PRIVATE_KEYS", (), items, secret=True)
    allow_sandbox: bool = setting("LIQPAY_ALLOW_SANDBOX", False, flag)

    def rows(self) -> Rows:
        return [
            ("private keys", count(self.private_keys)),
            ("sandbox payments", "applied" if self.allow_sandbox else "not applied"),
        ]
