"""The provider registry: one entry per provider, naming everything the system needs from it.

Everything that lists providers reads ``PROVIDERS``: the settings, the receiver's routes,
the worker's steps, the CLI's choices, ``send-test``, ``payhooks dev``, ``check-config`` and
the test fixtures. The parts live in the layers above this one, so an entry names them by
dotted path (``module:attribute``), and the layer that uses a part resolves it with
``load``: the domain imports nothing of ours above it, and the import contracts hold.

Operators' own systems (``generic/<source>``) are not in ``PROVIDERS``: each configured
source is its own URL. ``GENERIC`` names their parts the same way.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

from payhooks.domain.events import RegularPaymentProvider


@dataclass(frozen=True, slots=True)
class ProviderSpec:
    #: Its URL segment (/webhooks/<name>) and the prefix of its event keys.
    name: str
    display_name: str
    #: The Nexudus ``eRegularPaymentProvider`` values its tokens carry; the first is the
    #: usual one (Stripe's ACH and Bacs debits carry their own).
    payment_providers: tuple[RegularPaymentProvider, ...]
    #: The ``Settings`` field whose value turns it on, and the variable that sets it.
    enabled_by: str
    enabled_by_env: str
    #: The prefix of every variable it reads (``check-config`` looks there for placeholders).
    env_prefix: str
    #: Its receiver class (``service/providers/``), built with ``from_settings(settings)``.
    receiver: str
    #: Its ``check-config`` rows: a function of the settings (``payhooks/cli/config_check.py``).
    config_rows: str
    #: What ``send-test`` sends: a function of a ``SampleRequest`` (``devtools/samples/``).
    sample: str
    #: Whether ``send-test`` registers its sample with (or has it signed by) the sandbox.
    sample_uses_sandbox: bool = False
    #: The settings its worker step cannot confirm a payment without, as (``Settings`` field,
    #: variable); ``check-config`` names the missing ones.
    worker_needs: tuple[tuple[str, str], ...] = ()
    #: Its worker step (``workers/provider_steps/``), built with
    #: ``from_settings(settings, redis, trail)``; None when its events are applied as sent.
    worker_step: str | None = None
    #: What serves its development stand-in from the sandbox (``devtools/sandbox/``), called
    #: as ``(app, state or None)``; None when the worker never calls its API. Providers may
    #: share one stand-in (PayPal's two APIs).
    stand_in: str | None = None


PROVIDERS: tuple[ProviderSpec, ...] = (
    ProviderSpec(
        name="stripe",
        display_name="Stripe",
        payment_providers=(
            RegularPaymentProvider.STRIPE,
            RegularPaymentProvider.STRIPE_ACH,
            RegularPaymentProvider.STRIPE_BACS,
        ),
        enabled_by="stripe_webhook_secrets",
        enabled_by_env="STRIPE_WEBHOOK_SECRETS",
        env_prefix="STRIPE_",
        receiver="service.providers.stripe:StripeWebhook",
        config_rows="payhooks.cli.config_check:stripe_rows",
        sample="payhooks.devtools.samples.stripe:for_send_test",
        worker_step="workers.provider_steps.stripe:StripeStep",
        stand_in="payhooks.devtools.sandbox.stripe:add_stripe_routes",
    ),
    ProviderSpec(
        name="gocardless",
        display_name="GoCardless",
        payment_providers=(RegularPaymentProvider.GOCARDLESS,),
        enabled_by="gocardless_webhook_secrets",
        enabled_by_env="GOCARDLESS_WEBHOOK_SECRETS",
        env_prefix="GOCARDLESS_",
        receiver="service.providers.gocardless:GoCardlessWebhook",
        config_rows="payhooks.cli.config_check:gocardless_rows",
        sample="payhooks.devtools.samples.gocardless:for_send_test",
        sample_uses_sandbox=True,
        worker_needs=(("gocardless_access_token", "GOCARDLESS_ACCESS_TOKEN"),),
        worker_step="workers.provider_steps.gocardless:GoCardlessStep",
        stand_in="payhooks.devtools.sandbox.gocardless:add_gocardless_routes",
    ),
    ProviderSpec(
        name="braintree",
        display_name="Braintree",
        payment_providers=(RegularPaymentProvider.BRAINTREE,),
        enabled_by="braintree_keys",
        enabled_by_env="BRAINTREE_KEYS",
        env_prefix="BRAINTREE_",
        receiver="service.providers.braintree:BraintreeWebhook",
        config_rows="payhooks.cli.config_check:braintree_rows",
        sample="payhooks.devtools.samples.braintree:for_send_test",
    ),
    ProviderSpec(
        name="authorizenet",
        display_name="Authorize.Net",
        payment_providers=(RegularPaymentProvider.AUTHORIZE_NET_SUBSCRIPTION,),
        enabled_by="authorizenet_signature_keys",
        enabled_by_env="AUTHORIZENET_SIGNATURE_KEYS",
        env_prefix="AUTHORIZENET_",
        receiver="service.providers.authorizenet:AuthorizeNetWebhook",
        config_rows="payhooks.cli.config_check:authorizenet_rows",
        sample="payhooks.devtools.samples.authorizenet:for_send_test",
        sample_uses_sandbox=True,
        worker_needs=(
            ("authorizenet_login_id", "AUTHORIZENET_LOGIN_ID"),
            ("authorizenet_transaction_key", "AUTHORIZENET_TRANSACTION_KEY"),
        ),
        worker_step="workers.provider_steps.authorizenet:AuthorizeNetStep",
        stand_in="payhooks.devtools.sandbox.authorizenet:add_authorizenet_routes",
    ),
    ProviderSpec(
        name="paypal",
        display_name="PayPal",
        payment_providers=(
            RegularPaymentProvider.PAYPAL_ADAPTIVE,
            RegularPaymentProvider.PAYPAL_STANDARD_SUBSCRIPTION,
        ),
        enabled_by="paypal_webhook_ids",
        enabled_by_env="PAYPAL_WEBHOOK_IDS",
        env_prefix="PAYPAL_",
        receiver="service.providers.paypal:PayPalWebhook",
        config_rows="payhooks.cli.config_check:paypal_rows",
        sample="payhooks.devtools.samples.paypal:for_send_test",
        sample_uses_sandbox=True,
        stand_in="payhooks.devtools.sandbox.paypal:add_paypal_routes",
    ),
    ProviderSpec(
        name="paypal-ipn",
        display_name="PayPal IPN",
        payment_providers=(RegularPaymentProvider.PAYPAL_STANDARD_SUBSCRIPTION,),
        enabled_by="paypal_ipn_receiver_emails",
        enabled_by_env="PAYPAL_IPN_RECEIVER_EMAILS",
        env_prefix="PAYPAL_",
        receiver="service.providers.paypal_ipn:PayPalIpn",
        config_rows="payhooks.cli.config_check:paypal_ipn_rows",
        sample="payhooks.devtools.samples.paypal:ipn_for_send_test",
        worker_step="workers.provider_steps.paypal_ipn:PayPalIpnStep",
        stand_in="payhooks.devtools.sandbox.paypal:add_paypal_routes",
    ),
    ProviderSpec(
        name="liqpay",
        display_name="LiqPay",
        payment_providers=(RegularPaymentProvider.LIQPAY,),
        enabled_by="liqpay_private_keys",
        enabled_by_env="LIQPAY_PRIVATE_KEYS",
        env_prefix="LIQPAY_",
        receiver="service.providers.liqpay:LiqPayWebhook",
        config_rows="payhooks.cli.config_check:liqpay_rows",
        sample="payhooks.devtools.samples.liqpay:for_send_test",
    ),
    ProviderSpec(
        name="epay",
        display_name="ePay",
        payment_providers=(RegularPaymentProvider.EPAY,),
        enabled_by="epay_md5_secrets",
        enabled_by_env="EPAY_MD5_SECRETS",
        env_prefix="EPAY_",
        receiver="service.providers.epay:EPayCallback",
        config_rows="payhooks.cli.config_check:epay_rows",
        sample="payhooks.devtools.samples.epay:for_send_test",
        sample_uses_sandbox=True,
        worker_needs=(("epay_merchant_number", "EPAY_MERCHANT_NUMBER"),),
        worker_step="workers.provider_steps.epay:EPayStep",
        stand_in="payhooks.devtools.sandbox.epay:add_epay_routes",
    ),
)

#: Operators' own systems: one receiver per configured source, at /webhooks/generic/<source>.
GENERIC = ProviderSpec(
    name="generic",
    display_name="Standard Webhooks",
    payment_providers=(RegularPaymentProvider.BANK_TRANSFER,),
    enabled_by="generic_webhook_secrets",
    enabled_by_env="GENERIC_WEBHOOK_SECRETS",
    env_prefix="GENERIC_",
    receiver="service.providers.generic:GenericWebhook",
    config_rows="payhooks.cli.config_check:generic_rows",
    sample="payhooks.devtools.samples.generic:for_send_test",
)

PROVIDER_NAMES: tuple[str, ...] = tuple(spec.name for spec in PROVIDERS)
BY_NAME: dict[str, ProviderSpec] = {spec.name: spec for spec in (*PROVIDERS, GENERIC)}


def stand_ins() -> dict[str, str]:
    """Each development stand-in once (PayPal's serves both its APIs), by its module's name."""
    paths = dict.fromkeys(spec.stand_in for spec in PROVIDERS if spec.stand_in is not None)
    return {_module_name(path): path for path in paths}


def _module_name(path: str) -> str:
    return path.partition(":")[0].rpartition(".")[2]


def load(path: str) -> Any:
    """The attribute a ``module:attribute`` path names, importing its module."""
    module, _, attribute = path.partition(":")
    return getattr(importlib.import_module(module), attribute)
