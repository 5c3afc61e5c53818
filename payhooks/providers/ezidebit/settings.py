"""EziDebit's settings section: a poll, no webhook.

``EZIDEBIT_DIGITAL_KEY`` turns the poll on; the scheduler runs it every
``EZIDEBIT_POLL_SECONDS``. Ezidebit's demo service is
``https://api.demo.ezidebit.com.au/v3-5/nonpci``.
"""

from __future__ import annotations

from dataclasses import dataclass

from payhooks.settings.provider import ProviderSettings
from payhooks.settings.reading import (
    Rows,
    currency_code,
    is_set,
    require_https,
    setting,
    url,
    whole,
)

LIVE_API_URL = "https://api.ezidebit.com.au/v3-5/nonpci"
DEMO_API_URL = "https://api.demo.ezidebit.com.au/v3-5/nonpci"


@dataclass(frozen=True, slots=True)
class EziDebitSettings(ProviderSettings):
    ENABLED_BY = None  # Ezidebit sends no webhook: no URL
    POLL_ENABLED_BY = "digital_key"

    digital_key: str | None = setting("EZIDEBIT_DIGITAL_KEY", secret=True)
    api_url: str = setting("EZIDEBIT_API_URL", LIVE_API_URL, url)
    #: Bank results reach Ezidebit by about 06:00 AEST: hourly finds them the same morning.
    poll_seconds: int = setting("EZIDEBIT_POLL_SECONDS", 3600, whole(minimum=1))
    #: Ezidebit's payments carry no currency: an Australian account's are in AUD (NZD in NZ).
    currency: str = setting("EZIDEBIT_CURRENCY", "AUD", currency_code)

    def check(self) -> None:
        # Every call carries the Digital Key in its body.
        require_https("EZIDEBIT_API_URL", self.api_url)

    def rows(self) -> Rows:
        return [
            ("Digital Key", is_set(self.digital_key)),
            ("API", self.api_url),
            ("poll every", f"{self.poll_seconds} s"),
            ("currency", self.currency),
        ]
