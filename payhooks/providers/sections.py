"""Each provider's settings section, by its name: where the settings object finds them.

The settings object (payhooks/settings/core.py) reads one of each at start-up; this is the
one module above it that it imports (the floors contract in pyproject.toml names it), and
it imports nothing but the sections. Order is the registry's, the generic sources last.
"""

from __future__ import annotations

from collections.abc import Mapping

from payhooks.providers.authorizenet.settings import AuthorizeNetSettings
from payhooks.providers.braintree.settings import BraintreeSettings
from payhooks.providers.epay.settings import EPaySettings
from payhooks.providers.ezidebit.settings import EziDebitSettings
from payhooks.providers.forte.settings import ForteSettings
from payhooks.providers.generic.settings import GenericSettings
from payhooks.providers.gocardless.settings import GoCardlessSettings
from payhooks.providers.liqpay.settings import LiqPaySettings
from payhooks.providers.paypal.settings import PayPalIpnSettings, PayPalSettings
from payhooks.providers.spreedly.settings import SpreedlySettings
from payhooks.providers.stripe.settings import StripeSettings
from payhooks.settings.provider import ProviderSettings

SECTIONS: Mapping[str, type[ProviderSettings]] = {
    "stripe": StripeSettings,
    "gocardless": GoCardlessSettings,
    "braintree": BraintreeSettings,
    "authorizenet": AuthorizeNetSettings,
    "paypal": PayPalSettings,
    "paypal-ipn": PayPalIpnSettings,
    "liqpay": LiqPaySettings,
    "epay": EPaySettings,
    "forte": ForteSettings,
    "ezidebit": EziDebitSettings,
    "spreedly": SpreedlySettings,
    "generic": GenericSettings,
}
