"""Each provider's worker step, by its name: where the worker finds them.

A step confirms an event with the provider's API (ePay, PayPal IPN, Forte, Spreedly: the message
itself is not proof enough) or completes it (Stripe, GoCardless, Authorize.Net: the webhook
leaves out the payment method, the invoice or the amount), or reads it against what came
before (EziDebit: a dishonour of a payment seen settled is its reversal). A provider whose events are
applied as sent has none.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from redis import Redis

from payhooks.providers.authorizenet.step import AuthorizeNetStep
from payhooks.providers.epay.step import EPayStep
from payhooks.providers.ezidebit.step import EziDebitStep
from payhooks.providers.forte.step import ForteStep
from payhooks.providers.gocardless.step import GoCardlessStep
from payhooks.providers.kit.steps import ProviderStep
from payhooks.providers.paypal.ipn_step import PayPalIpnStep
from payhooks.providers.spreedly.step import SpreedlyStep
from payhooks.providers.stripe.step import StripeStep
from payhooks.settings import Settings
from payhooks.storage.trail import Trail

#: Builds a provider's step for one worker process.
StepFactory = Callable[[Settings, Redis, Trail], ProviderStep]

WORKER_STEPS: Mapping[str, StepFactory] = {
    "stripe": StripeStep.from_settings,
    "gocardless": GoCardlessStep.from_settings,
    "authorizenet": AuthorizeNetStep.from_settings,
    "paypal-ipn": PayPalIpnStep.from_settings,
    "epay": EPayStep.from_settings,
    "forte": ForteStep.from_settings,
    "ezidebit": EziDebitStep.from_settings,
    "spreedly": SpreedlyStep.from_settings,
}


def build_steps(settings: Settings, redis: Redis, trail: Trail) -> dict[str, ProviderStep]:
    """Every provider's step, by the provider's name."""
    return {name: build(settings, redis, trail) for name, build in WORKER_STEPS.items()}
