"""Which providers exist: each one's name, display name and Nexudus provider values.

That is all the domain knows of them: each provider's parts (its settings, receiver, step,
sample) live in its own package above, in typed tables beside them, which a test holds to
this list. The domain names none of them.

Operators' own systems (``generic/<source>``) are not in ``PROVIDERS``: each configured
source is its own URL, under the one name ``GENERIC``.
"""

from __future__ import annotations

from dataclasses import dataclass

from payhooks.domain.events import RegularPaymentProvider


@dataclass(frozen=True, slots=True)
class ProviderSpec:
    #: Its URL segment (/webhooks/<name>) and the prefix of its event keys.
    name: str
    display_name: str
    #: The Nexudus ``eRegularPaymentProvider`` values its tokens carry; the first is the
    #: usual one (Stripe's ACH and Bacs debits carry their own).
    payment_providers: tuple[RegularPaymentProvider, ...]


PROVIDERS: tuple[ProviderSpec, ...] = (
    ProviderSpec(
        name="stripe",
        display_name="Stripe",
        payment_providers=(
            RegularPaymentProvider.STRIPE,
            RegularPaymentProvider.STRIPE_ACH,
            RegularPaymentProvider.STRIPE_BACS,
        ),
    ),
    ProviderSpec(
        name="gocardless",
        display_name="GoCardless",
        payment_providers=(RegularPaymentProvider.GOCARDLESS,),
    ),
    ProviderSpec(
        name="braintree",
        display_name="Braintree",
        payment_providers=(RegularPaymentProvider.BRAINTREE,),
    ),
    ProviderSpec(
        name="authorizenet",
        display_name="Authorize.Net",
        payment_providers=(RegularPaymentProvider.AUTHORIZE_NET_SUBSCRIPTION,),
    ),
    ProviderSpec(
        name="paypal",
        display_name="PayPal",
        payment_providers=(
            RegularPaymentProvider.PAYPAL_ADAPTIVE,
            RegularPaymentProvider.PAYPAL_STANDARD_SUBSCRIPTION,
        ),
    ),
    ProviderSpec(
        name="paypal-ipn",
        display_name="PayPal IPN",
        payment_providers=(RegularPaymentProvider.PAYPAL_STANDARD_SUBSCRIPTION,),
    ),
    ProviderSpec(
        name="liqpay",
        display_name="LiqPay",
        payment_providers=(RegularPaymentProvider.LIQPAY,),
    ),
    ProviderSpec(
        name="epay",
        display_name="ePay",
        payment_providers=(RegularPaymentProvider.EPAY,),
    ),
    ProviderSpec(
        name="forte",
        display_name="Forte",
        payment_providers=(RegularPaymentProvider.FORTE,),
    ),
    ProviderSpec(
        name="ezidebit",
        display_name="EziDebit",
        payment_providers=(RegularPaymentProvider.EZIDEBIT,),
    ),
    ProviderSpec(
        name="spreedly",
        display_name="Spreedly (MultiGateway)",
        payment_providers=(RegularPaymentProvider.MULTI_GATEWAY,),
    ),
)

#: Operators' own systems: one receiver per configured source, at /webhooks/generic/<source>.
GENERIC = ProviderSpec(
    name="generic",
    display_name="Standard Webhooks",
    payment_providers=(RegularPaymentProvider.BANK_TRANSFER,),
)

PROVIDER_NAMES: tuple[str, ...] = tuple(spec.name for spec in PROVIDERS)
BY_NAME: dict[str, ProviderSpec] = {spec.name: spec for spec in (*PROVIDERS, GENERIC)}
