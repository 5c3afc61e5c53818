"""The provider registry: one entry per configured provider, keyed by its URL name."""

from __future__ import annotations

import certifi

from payhooks.settings import PROVIDER_NAMES, Settings
from service.providers.authorizenet import AuthorizeNetWebhook
from service.providers.base import WebhookProvider
from service.providers.braintree import BraintreeWebhook
from service.providers.epay import EPayCallback
from service.providers.generic import GenericWebhook
from service.providers.gocardless import GoCardlessWebhook
from service.providers.liqpay import LiqPayWebhook
from service.providers.paypal import PayPalWebhook
from service.providers.paypal_ipn import PayPalIpn
from service.providers.stripe import StripeWebhook

__all__ = ["PROVIDER_NAMES", "build_providers"]


def build_providers(settings: Settings) -> dict[str, WebhookProvider]:
    providers: dict[str, WebhookProvider] = {}
    if settings.stripe_webhook_secrets:
        providers["stripe"] = StripeWebhook(
            settings.stripe_webhook_secrets,
            tolerance_seconds=settings.stripe_tolerance_seconds,
            invoice_metadata_key=settings.invoice_metadata_key,
            allow_test_mode=settings.stripe_allow_test_mode,
        )
    if settings.gocardless_webhook_secrets:
        providers["gocardless"] = GoCardlessWebhook(
            settings.gocardless_webhook_secrets,
            paid_action=settings.gocardless_paid_action,
            invoice_metadata_key=settings.invoice_metadata_key,
        )
    if settings.liqpay_private_keys:
        providers["liqpay"] = LiqPayWebhook(
            settings.liqpay_private_keys, allow_sandbox=settings.liqpay_allow_sandbox
        )
    if settings.braintree_keys:
        providers["braintree"] = BraintreeWebhook(
            settings.braintree_keys,
            merchant_id=settings.braintree_merchant_id or "",
            environment=settings.braintree_environment,
            invoice_field=settings.braintree_invoice_field,
        )
    if settings.authorizenet_signature_keys:
        providers["authorizenet"] = AuthorizeNetWebhook(settings.authorizenet_signature_keys)
    if settings.paypal_webhook_ids:
        providers["paypal"] = PayPalWebhook(
            settings.paypal_webhook_ids,
            cert_url_prefixes=settings.paypal_cert_url_prefixes,
            trust_file=settings.paypal_cert_trust_file or certifi.where(),
            provider_value=settings.paypal_provider_value,
        )
    if settings.paypal_ipn_receiver_emails:
        providers["paypal-ipn"] = PayPalIpn()
    if settings.epay_md5_secrets:
        providers["epay"] = EPayCallback(settings.epay_md5_secrets)
    for source, secrets in settings.generic_webhook_secrets.items():
        provider = GenericWebhook(source, secrets)
        providers[provider.name] = provider
    return providers
