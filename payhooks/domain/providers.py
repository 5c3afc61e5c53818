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
    #: Its settings section (``payhooks/settings/``): its variables and their defaults, when
    #: it is on, what its worker step needs and its ``check-config`` rows.
    settings: str
    #: Its receiver class (``service/providers/``), built with ``from_settings(settings)``.
    receiver: str
    #: What ``send-test`` sends: a function of a ``SampleRequest`` (``devtools/samples/``).
    sample: str
    #: Its variables for `payhooks dev` and the tests, pointing it at its stand-in: a
    #: function of ``(DevSandbox, env)`` (``devtools/samples/``).
    dev_environment: str
    #: Whether ``send-test`` registers its sample with (or has it signed by) the sandbox.
    sample_uses_sandbox: bool = False
    #: Its worker step (``workers/provider_steps/``), built with
    #: ``from_settings(settings, redis, trail)``; None when its events are applied as sent.
    worker_step: str | None = None
    #: What serves its development stand-in from the sandbox (``devtools/sandbox/``), called
    #: as ``(app, state or None)``; None when the worker never calls its API. Providers may
    #: share one stand-in (PayPal's two APIs).
    stand_in: str | None = None
    #: What ``check-config --probe`` calls with its credentials (``payhooks/cli/probe.py``),
    #: as ``(section, http) -> checks``; None when it has no API credential to try.
    probe: str | None = None


PROVIDERS: tuple[ProviderSpec, ...] = (
    ProviderSpec(
        name="stripe",
        settings="payhooks.providers.stripe.settings:StripeSettings",
        display_name="Stripe",
        payment_providers=(
            RegularPaymentProvider.STRIPE,
            RegularPaymentProvider.STRIPE_ACH,
            RegularPaymentProvider.STRIPE_BACS,
        ),
        receiver="payhooks.providers.stripe.receiver:StripeWebhook",
        sample="payhooks.providers.stripe.sample:for_send_test",
        dev_environment="payhooks.providers.stripe.sample:dev_environment",
        worker_step="payhooks.providers.stripe.step:StripeStep",
        stand_in="payhooks.providers.stripe.stand_in:add_stripe_routes",
        probe="payhooks.providers.stripe.probe:checks",
    ),
    ProviderSpec(
        name="gocardless",
        settings="payhooks.providers.gocardless.settings:GoCardlessSettings",
        display_name="GoCardless",
        payment_providers=(RegularPaymentProvider.GOCARDLESS,),
        receiver="payhooks.providers.gocardless.receiver:GoCardlessWebhook",
        sample="payhooks.providers.gocardless.sample:for_send_test",
        dev_environment="payhooks.providers.gocardless.sample:dev_environment",
        sample_uses_sandbox=True,
        worker_step="payhooks.providers.gocardless.step:GoCardlessStep",
        stand_in="payhooks.providers.gocardless.stand_in:add_gocardless_routes",
        probe="payhooks.providers.gocardless.probe:checks",
    ),
    ProviderSpec(
        name="braintree",
        settings="payhooks.providers.braintree.settings:BraintreeSettings",
        display_name="Braintree",
        payment_providers=(RegularPaymentProvider.BRAINTREE,),
        receiver="payhooks.providers.braintree.receiver:BraintreeWebhook",
        sample="payhooks.providers.braintree.sample:for_send_test",
        dev_environment="payhooks.providers.braintree.sample:dev_environment",
        probe="payhooks.providers.braintree.probe:checks",
    ),
    ProviderSpec(
        name="authorizenet",
        settings="payhooks.providers.authorizenet.settings:AuthorizeNetSettings",
        display_name="Authorize.Net",
        payment_providers=(RegularPaymentProvider.AUTHORIZE_NET_SUBSCRIPTION,),
        receiver="payhooks.providers.authorizenet.receiver:AuthorizeNetWebhook",
        sample="payhooks.providers.authorizenet.sample:for_send_test",
        dev_environment="payhooks.providers.authorizenet.sample:dev_environment",
        sample_uses_sandbox=True,
        worker_step="payhooks.providers.authorizenet.step:AuthorizeNetStep",
        stand_in="payhooks.providers.authorizenet.stand_in:add_authorizenet_routes",
        probe="payhooks.providers.authorizenet.probe:checks",
    ),
    ProviderSpec(
        name="paypal",
        settings="payhooks.providers.paypal.settings:PayPalSettings",
        display_name="PayPal",
        payment_providers=(
            RegularPaymentProvider.PAYPAL_ADAPTIVE,
            RegularPaymentProvider.PAYPAL_STANDARD_SUBSCRIPTION,
        ),
        receiver="payhooks.providers.paypal.receiver:PayPalWebhook",
        sample="payhooks.providers.paypal.sample:for_send_test",
        dev_environment="payhooks.providers.paypal.sample:dev_environment",
        sample_uses_sandbox=True,
        stand_in="payhooks.providers.paypal.stand_in:add_paypal_routes",
    ),
    ProviderSpec(
        name="paypal-ipn",
        settings="payhooks.providers.paypal.settings:PayPalIpnSettings",
        display_name="PayPal IPN",
        payment_providers=(RegularPaymentProvider.PAYPAL_STANDARD_SUBSCRIPTION,),
        receiver="payhooks.providers.paypal.ipn_receiver:PayPalIpn",
        sample="payhooks.providers.paypal.sample:ipn_for_send_test",
        dev_environment="payhooks.providers.paypal.sample:ipn_dev_environment",
        worker_step="payhooks.providers.paypal.ipn_step:PayPalIpnStep",
        stand_in="payhooks.providers.paypal.stand_in:add_paypal_routes",
    ),
    ProviderSpec(
        name="liqpay",
        settings="payhooks.providers.liqpay.settings:LiqPaySettings",
        display_name="LiqPay",
        payment_providers=(RegularPaymentProvider.LIQPAY,),
        receiver="payhooks.providers.liqpay.receiver:LiqPayWebhook",
        sample="payhooks.providers.liqpay.sample:for_send_test",
        dev_environment="payhooks.providers.liqpay.sample:dev_environment",
    ),
    ProviderSpec(
        name="epay",
        settings="payhooks.providers.epay.settings:EPaySettings",
        display_name="ePay",
        payment_providers=(RegularPaymentProvider.EPAY,),
        receiver="payhooks.providers.epay.receiver:EPayCallback",
        sample="payhooks.providers.epay.sample:for_send_test",
        dev_environment="payhooks.providers.epay.sample:dev_environment",
        sample_uses_sandbox=True,
        worker_step="payhooks.providers.epay.step:EPayStep",
        stand_in="payhooks.providers.epay.stand_in:add_epay_routes",
        probe="payhooks.providers.epay.probe:checks",
    ),
    ProviderSpec(
        name="forte",
        settings="payhooks.providers.forte.settings:ForteSettings",
        display_name="Forte",
        payment_providers=(RegularPaymentProvider.FORTE,),
        receiver="payhooks.providers.forte.receiver:ForteWebhook",
        sample="payhooks.providers.forte.sample:for_send_test",
        dev_environment="payhooks.providers.forte.sample:dev_environment",
        sample_uses_sandbox=True,
        worker_step="payhooks.providers.forte.step:ForteStep",
        stand_in="payhooks.providers.forte.stand_in:add_forte_routes",
        probe="payhooks.providers.forte.probe:checks",
    ),
)

#: Operators' own systems: one receiver per configured source, at /webhooks/generic/<source>.
GENERIC = ProviderSpec(
    name="generic",
    settings="payhooks.providers.generic.settings:GenericSettings",
    display_name="Standard Webhooks",
    payment_providers=(RegularPaymentProvider.BANK_TRANSFER,),
    receiver="payhooks.providers.generic.receiver:GenericWebhook",
    sample="payhooks.providers.generic.sample:for_send_test",
    dev_environment="payhooks.providers.generic.sample:dev_environment",
)

PROVIDER_NAMES: tuple[str, ...] = tuple(spec.name for spec in PROVIDERS)
BY_NAME: dict[str, ProviderSpec] = {spec.name: spec for spec in (*PROVIDERS, GENERIC)}


def stand_ins() -> dict[str, str]:
    """Each development stand-in once (PayPal's serves both its APIs), by its package's name."""
    paths = dict.fromkeys(spec.stand_in for spec in PROVIDERS if spec.stand_in is not None)
    return {_module_name(path): path for path in paths}


def _module_name(path: str) -> str:
    return path.partition(":")[0].split(".")[-2]


def load(path: str) -> Any:
    """The attribute a ``module:attribute`` path names, importing its module."""
    module, _, attribute = path.partition(":")
    return getattr(importlib.import_module(module), attribute)
