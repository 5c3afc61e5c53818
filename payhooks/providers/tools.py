"""What the tools above everything use of each provider, by its name: its sample and dev
variables (`send-test`, `payhooks dev`, the tests), its stand-in, its `check-config --probe`.

The tools (payhooks/cli/, payhooks/devtools/) and the tests read these tables; nothing
below them does.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from payhooks.providers.authorizenet import probe as authorizenet_probe
from payhooks.providers.authorizenet import sample as authorizenet_sample
from payhooks.providers.authorizenet.settings import AuthorizeNetSettings
from payhooks.providers.authorizenet.stand_in import add_authorizenet_routes
from payhooks.providers.braintree import probe as braintree_probe
from payhooks.providers.braintree import sample as braintree_sample
from payhooks.providers.braintree.settings import BraintreeSettings
from payhooks.providers.braintree.stand_in import add_braintree_routes
from payhooks.providers.epay import probe as epay_probe
from payhooks.providers.epay import sample as epay_sample
from payhooks.providers.epay.settings import EPaySettings
from payhooks.providers.epay.stand_in import add_epay_routes
from payhooks.providers.ezidebit import probe as ezidebit_probe
from payhooks.providers.ezidebit import sample as ezidebit_sample
from payhooks.providers.ezidebit.settings import EziDebitSettings
from payhooks.providers.ezidebit.stand_in import add_ezidebit_routes
from payhooks.providers.forte import probe as forte_probe
from payhooks.providers.forte import sample as forte_sample
from payhooks.providers.forte.settings import ForteSettings
from payhooks.providers.forte.stand_in import add_forte_routes
from payhooks.providers.generic import sample as generic_sample
from payhooks.providers.gocardless import probe as gocardless_probe
from payhooks.providers.gocardless import sample as gocardless_sample
from payhooks.providers.gocardless.settings import GoCardlessSettings
from payhooks.providers.gocardless.stand_in import add_gocardless_routes
from payhooks.providers.kit.probes import Probe, probe_of
from payhooks.providers.kit.samples import DevSandbox, Sample, SampleRequest
from payhooks.providers.liqpay import sample as liqpay_sample
from payhooks.providers.paypal import probe as paypal_probe
from payhooks.providers.paypal import sample as paypal_sample
from payhooks.providers.paypal.settings import PayPalSettings
from payhooks.providers.paypal.stand_in import add_paypal_routes
from payhooks.providers.spreedly import probe as spreedly_probe
from payhooks.providers.spreedly import sample as spreedly_sample
from payhooks.providers.spreedly.settings import SpreedlySettings
from payhooks.providers.spreedly.stand_in import add_spreedly_routes
from payhooks.providers.stripe import probe as stripe_probe
from payhooks.providers.stripe import sample as stripe_sample
from payhooks.providers.stripe.settings import StripeSettings
from payhooks.providers.stripe.stand_in import add_stripe_routes

#: Serves a provider's development stand-in from the sandbox's app; its state, when the
#: caller keeps one (None: it starts empty).
StandIn = Callable[[web.Application, Any], object]


@dataclass(frozen=True, slots=True)
class ProviderTools:
    #: What `send-test` sends.
    sample: Callable[[SampleRequest], Sample]
    #: Its variables for `payhooks dev` and the tests, pointing it at its stand-in.
    dev_environment: Callable[[DevSandbox, Mapping[str, str]], dict[str, str]]
    #: Whether `send-test` registers its sample with (or has it signed by) the sandbox.
    sample_uses_sandbox: bool = False
    #: Its read-only calls with its credentials; None when it has none to try.
    probe: Probe | None = None


TOOLS: Mapping[str, ProviderTools] = {
    "stripe": ProviderTools(
        stripe_sample.for_send_test,
        stripe_sample.dev_environment,
        probe=probe_of(StripeSettings, stripe_probe.checks),
    ),
    "gocardless": ProviderTools(
        gocardless_sample.for_send_test,
        gocardless_sample.dev_environment,
        sample_uses_sandbox=True,
        probe=probe_of(GoCardlessSettings, gocardless_probe.checks),
    ),
    "braintree": ProviderTools(
        braintree_sample.for_send_test,
        braintree_sample.dev_environment,
        probe=probe_of(BraintreeSettings, braintree_probe.checks),
    ),
    "authorizenet": ProviderTools(
        authorizenet_sample.for_send_test,
        authorizenet_sample.dev_environment,
        sample_uses_sandbox=True,
        probe=probe_of(AuthorizeNetSettings, authorizenet_probe.checks),
    ),
    "paypal": ProviderTools(
        paypal_sample.for_send_test,
        paypal_sample.dev_environment,
        sample_uses_sandbox=True,
        probe=probe_of(PayPalSettings, paypal_probe.checks),
    ),
    "paypal-ipn": ProviderTools(paypal_sample.ipn_for_send_test, paypal_sample.ipn_dev_environment),
    "liqpay": ProviderTools(liqpay_sample.for_send_test, liqpay_sample.dev_environment),
    "epay": ProviderTools(
        epay_sample.for_send_test,
        epay_sample.dev_environment,
        sample_uses_sandbox=True,
        probe=probe_of(EPaySettings, epay_probe.checks),
    ),
    "forte": ProviderTools(
        forte_sample.for_send_test,
        forte_sample.dev_environment,
        sample_uses_sandbox=True,
        probe=probe_of(ForteSettings, forte_probe.checks),
    ),
    # No webhook: its sample is a payment registered with its stand-in for the next poll.
    "ezidebit": ProviderTools(
        ezidebit_sample.for_send_test,
        ezidebit_sample.dev_environment,
        sample_uses_sandbox=True,
        probe=probe_of(EziDebitSettings, ezidebit_probe.checks),
    ),
    "spreedly": ProviderTools(
        spreedly_sample.for_send_test,
        spreedly_sample.dev_environment,
        sample_uses_sandbox=True,
        probe=probe_of(SpreedlySettings, spreedly_probe.checks),
    ),
    "generic": ProviderTools(generic_sample.for_send_test, generic_sample.dev_environment),
}

#: Each development stand-in once, by its package's name (PayPal's serves both its APIs).
STAND_INS: Mapping[str, StandIn] = {
    "stripe": add_stripe_routes,
    "gocardless": add_gocardless_routes,
    "braintree": add_braintree_routes,
    "authorizenet": add_authorizenet_routes,
    "paypal": add_paypal_routes,
    "epay": add_epay_routes,
    "forte": add_forte_routes,
    "ezidebit": add_ezidebit_routes,
    "spreedly": add_spreedly_routes,
}
