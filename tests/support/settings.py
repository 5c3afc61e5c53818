"""The secrets the test settings are built with, and a copy of settings with changes."""

from __future__ import annotations

import dataclasses
from typing import Any

from payhooks.providers.generic.sample import DEV_SECRET as GENERIC_DEV_SECRET
from payhooks.providers.gocardless.sample import DEV_WEBHOOK_SECRET as GOCARDLESS_DEV_SECRET
from payhooks.providers.liqpay.sample import DEV_PRIVATE_KEY as LIQPAY_DEV_KEY
from payhooks.providers.stripe.sample import DEV_WEBHOOK_SECRET
from payhooks.settings import ProviderSettings, Settings

STRIPE_SECRET = DEV_WEBHOOK_SECRET
OLD_STRIPE_SECRET = "whsec_previous_secret_for_rotation"
GOCARDLESS_SECRET = GOCARDLESS_DEV_SECRET
OLD_GOCARDLESS_SECRET = "previous_gocardless_secret"
EPAY_SECRET = "payhooks_dev_only_epay_secret"
AUTHORIZENET_KEY = "52CB4A002C634B84E397DC8A218E1A160BA7CAB7CBE4C05B35E9CBB05E14FE4A"
PAYPAL_WEBHOOK_ID = "WH-TEST-PAYHOOKS"
PAYPAL_RECEIVER = "billing@coworking.example"
BRAINTREE_PUBLIC = "payhooks_test_public"
BRAINTREE_PRIVATE = "payhooks_test_private"
GENERIC_SECRET = GENERIC_DEV_SECRET
OLD_GENERIC_SECRET = "whsec_b2xkLWdlbmVyaWMtc2VjcmV0"  # base64 of "old-generic-secret"
LIQPAY_KEY = LIQPAY_DEV_KEY
OLD_LIQPAY_KEY = "previous_liqpay_private_key"


def with_settings(settings: Settings, **changes: Any) -> Settings:
    return dataclasses.replace(settings, **changes)


def with_section(settings: Settings, kind: type[ProviderSettings], **changes: Any) -> Settings:
    """A copy whose ``kind`` section has ``changes``."""
    return settings.with_provider(dataclasses.replace(settings.provider(kind), **changes))
