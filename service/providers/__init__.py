"""The receiver's providers: one per configured entry of the registry, keyed by its URL name."""

from __future__ import annotations

from payhooks.domain.providers import PROVIDERS, load
from payhooks.providers.generic.receiver import GenericWebhook
from payhooks.providers.generic.settings import GenericSettings
from payhooks.providers.kit.receiving import WebhookProvider
from payhooks.settings import Settings

__all__ = ["build_providers"]


def build_providers(settings: Settings) -> dict[str, WebhookProvider]:
    enabled = set(settings.enabled_providers())
    providers: dict[str, WebhookProvider] = {
        spec.name: load(spec.receiver).from_settings(settings)
        for spec in PROVIDERS
        if spec.name in enabled
    }
    for source, secrets in settings.provider(GenericSettings).webhook_secrets.items():
        provider = GenericWebhook(source, secrets)
        providers[provider.name] = provider
    return providers
