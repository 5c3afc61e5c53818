"""Each provider's receiver, by its name (its URL segment): where the receiver finds them.

A receiver verifies and normalises what its provider sends to ``/webhooks/<name>``;
operators' own systems have one per configured source (``generic/<source>``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from payhooks.providers.authorizenet.receiver import AuthorizeNetWebhook
from payhooks.providers.braintree.receiver import BraintreeWebhook
from payhooks.providers.epay.receiver import EPayCallback
from payhooks.providers.forte.receiver import ForteWebhook
from payhooks.providers.generic.receiver import GenericWebhook
from payhooks.providers.generic.settings import GenericSettings
from payhooks.providers.gocardless.receiver import GoCardlessWebhook
from payhooks.providers.kit.receiving import WebhookProvider
from payhooks.providers.liqpay.receiver import LiqPayWebhook
from payhooks.providers.paypal.ipn_receiver import PayPalIpn
from payhooks.providers.paypal.receiver import PayPalWebhook
from payhooks.providers.spreedly.receiver import SpreedlyWebhook
from payhooks.providers.stripe.receiver import StripeWebhook
from payhooks.settings import Settings

__all__ = ["RECEIVERS", "SOURCE_RECEIVER", "ReceiverFactory", "build_providers"]

#: Builds a provider's receiver from the settings (its section, the invoice metadata key).
ReceiverFactory = Callable[[Settings], WebhookProvider]

RECEIVERS: Mapping[str, ReceiverFactory] = {
    "stripe": StripeWebhook.from_settings,
    "gocardless": GoCardlessWebhook.from_settings,
    "braintree": BraintreeWebhook.from_settings,
    "authorizenet": AuthorizeNetWebhook.from_settings,
    "paypal": PayPalWebhook.from_settings,
    "paypal-ipn": PayPalIpn.from_settings,
    "liqpay": LiqPayWebhook.from_settings,
    "epay": EPayCallback.from_settings,
    "forte": ForteWebhook.from_settings,
    "spreedly": SpreedlyWebhook.from_settings,
}

#: Operators' own systems: one receiver per configured source, from its name and secrets.
SOURCE_RECEIVER: Callable[[str, tuple[str, ...]], WebhookProvider] = GenericWebhook


def build_providers(settings: Settings) -> dict[str, WebhookProvider]:
    """The receivers of the providers the settings enable, by URL name."""
    enabled = set(settings.enabled_providers())
    providers = {name: build(settings) for name, build in RECEIVERS.items() if name in enabled}
    for source, secrets in settings.provider(GenericSettings).webhook_secrets.items():
        provider = SOURCE_RECEIVER(source, secrets)
        providers[provider.name] = provider
    return providers
