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
        settings="payhooks.settings.stripe:StripeSettings",
        display_name="Stripe",
        payment_providers=(
            RegularPaymentProvider.STRIPE,
            RegularPaymentProvider.STRIPE_ACH,
            RegularPaymentProvider.STRIPE_BACS,
        ),
        receiver="service.providers.stripe:StripeWebhook",
        sample="payhooks.devtools.samples.stripe:for_send_test",
        dev_environment="payhooks.devtools.samples.stripe:dev_environment",
        worker_step="workers.provider_steps.stripe:StripeStep",
        stand_in="payhooks.devtools.sandbox.stripe:add_stripe_routes",
        probe="payhooks.cli.probe:stripe_checks",
    ),
    ProviderSpec(
        name="gocardless",
        settings="payhooks.settings.gocardless:GoCardlessSettings",
        display_name="GoCardless",
        payment_providers=(RegularPaymentProvider.GOCARDLESS,),
        receiver="service.providers.gocardless:GoCardlessWebhook",
        sample="payhooks.devtools.samples.gocardless:for_send_test",
        dev_environment="payhooks.devtools.samples.gocardless:dev_environment",
        sample_uses_sandbox=True,
        worker_step="workers.provider_steps.gocardless:GoCardlessStep",
        stand_in="payhooks.devtools.sandbox.gocardless:add_gocardless_routes",
        probe="payhooks.cli.probe:gocardless_checks",
    ),
    ProviderSpec(
        name="braintree",
        settings="payhooks.settings.braintree:BraintreeSettings",
        display_name="Braintree",
        payment_providers=(RegularPaymentProvider.BRAINTREE,),
        receiver="service.providers.braintree:BraintreeWebhook",
        sample="payhooks.devtools.samples.braintree:for_send_test",
        dev_environment="payhooks.devtools.samples.braintree:dev_environment",
        probe="payhooks.cli.probe:braintree_checks",
    ),
    ProviderSpec(
        name="authorizenet",
        settings="payhooks.settings.authorizenet:AuthorizeNetSettings",
        display_name="Authorize.Net",
        payment_providers=(RegularPaymentProvider.AUTHORIZE_NET_SUBSCRIPTION,),
        receiver="service.providers.authorizenet:AuthorizeNetWebhook",
        sample="payhooks.devtools.samples.authorizenet:for_send_test",
        dev_environment="payhooks.devtools.samples.authorizenet:dev_environment",
        sample_uses_sandbox=True,
        worker_step="workers.provider_steps.authorizenet:AuthorizeNetStep",
        stand_in="payhooks.devtools.sandbox.authorizenet:add_authorizenet_routes",
        probe="payhooks.cli.probe:authorizenet_checks",
    ),
    ProviderSpec(
        name="paypal",
        settings="payhooks.settings.paypal:PayPalSettings",
        display_name="PayPal",
        payment_providers=(
            RegularPaymentProvider.PAYPAL_ADAPTIVE,
            RegularPaymentProvider.PAYPAL_STANDARD_SUBSCRIPTION,
        ),
        receiver="service.providers.paypal:PayPalWebhook",
        sample="payhooks.devtools.samples.paypal:for_send_test",
        dev_environment="payhooks.devtools.samples.paypal:dev_environment",
        sample_uses_sandbox=True,
        stand_in="payhooks.devtools.sandbox.paypal:add_paypal_routes",
    ),
    ProviderSpec(
        name="paypal-ipn",
        settings="payhooks.settings.paypal:PayPalIpnSettings",
        display_name="PayPal IPN",
        payment_providers=(RegularPaymentProvider.PAYPAL_STANDARD_SUBSCRIPTION,),
        receiver="service.providers.paypal_ipn:PayPalIpn",
        sample="payhooks.devtools.samples.paypal:ipn_for_send_test",
        dev_environment="payhooks.devtools.samples.paypal:ipn_dev_environment",
        worker_step="workers.provider_steps.paypal_ipn:PayPalIpnStep",
        stand_in="payhooks.devtools.sandbox.paypal:add_paypal_routes",
    ),
    ProviderSpec(
        name="liqpay",
        settings="payhooks.settings.liqpay:LiqPaySettings",
        display_name="LiqPay",
        payment_providers=(RegularPaymentProvider.LIQPAY,),
        receiver="service.providers.liqpay:LiqPayWebhook",
        sample="payhooks.devtools.samples.liqpay:for_send_test",
        dev_environment="payhooks.devtools.samples.liqpay:dev_environment",
    ),
    ProviderSpec(
        name="epay",
        settings="payhooks.settings.epay:EPaySettings",
        display_name="ePay",
        payment_providers=(RegularPaymentProvider.EPAY,),
        receiver="service.providers.epay:EPayCallback",
        sample="payhooks.devtools.samples.epay:for_send_test",
        dev_environment="payhooks.devtools.samples.epay:dev_environment",
        sample_uses_sandbox=True,
        worker_step="workers.provider_steps.epay:EPayStep",
        stand_in="payhooks.devtools.sandbox.epay:add_epay_routes",
        probe="payhooks.cli.probe:epay_checks",
    ),
    ProviderSpec(
        name="forte",
        settings="payhooks.settings.forte:ForteSettings",
        display_name="Forte",
        payment_providers=(RegularPaymentProvider.FORTE,),
        receiver="service.providers.forte:ForteWebhook",
        sample="payhooks.devtools.samples.forte:for_send_test",
        dev_environment="payhooks.devtools.samples.forte:dev_environment",
        sample_uses_sandbox=True,
        worker_step="workers.provider_steps.forte:ForteStep",
        stand_in="payhooks.devtools.sandbox.forte:add_forte_routes",
        probe="payhooks.cli.probe:forte_checks",
    ),
)

#: Operators' own systems: one receiver per configured source, at /webhooks/generic/<source>.
GENERIC = ProviderSpec(
    name="generic",
    settings="payhooks.settings.generic:GenericSettings",
    display_name="Standard Webhooks",
    payment_providers=(RegularPaymentProvider.BANK_TRANSFER,),
    receiver="service.providers.generic:GenericWebhook",
    sample="payhooks.devtools.samples.generic:for_send_test",
    dev_environment="payhooks.devtools.samples.generic:dev_environment",
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
