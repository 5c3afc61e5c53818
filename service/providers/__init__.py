"""The provider registry: one entry per configured provider, keyed by its URL name."""

from __future__ import annotations

from payhooks.settings import Settings
from service.providers.base import WebhookProvider
from service.providers.stripe import StripeWebhook


def build_providers(settings: Settings) -> dict[str, WebhookProvider]:
    providers: dict[str, WebhookProvider] = {}
    if settings.stripe_webhook_secrets:
        providers["stripe"] = StripeWebhook(
            settings.stripe_webhook_secrets,
            tolerance_seconds=settings.stripe_tolerance_seconds,
            invoice_metadata_key=settings.invoice_metadata_key,
        )
    return providers
