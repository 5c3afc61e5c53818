"""Operators' own systems: one Standard Webhooks source per name."""

from __future__ import annotations

from dataclasses import dataclass

from payhooks.settings.provider import ProviderSettings
from payhooks.settings.reading import Rows, count, setting, sources


@dataclass(frozen=True, slots=True)
class GenericSettings(ProviderSettings):
    ENABLED_BY = "webhook_secrets"

    #: Source name -> its Standard Webhooks secrets.
    webhook_secrets: dict[str, tuple[str, ...]] = setting(
        "GENERIC_WEBHOOK_SECRETS", read=sources, secret=True, factory=dict
    )

    def urls(self, name: str) -> list[str]:
        """One URL per source: ``generic/<source>``."""
        return [f"{name}/{source}" for source in self.webhook_secrets]

    def rows(self) -> Rows:
        return [("sources", ", ".join(self.webhook_secrets))]

    def source_rows(self, source: str) -> Rows:
        return [("secrets", count(self.webhook_secrets[source]))]
