"""The provider registry: every part an entry names exists and has the shape its user calls."""

from __future__ import annotations

import inspect

import httpx
import pytest
from redis import Redis

from payhooks.cli.config_check import problems, provider_rows
from payhooks.domain.providers import (
    BY_NAME,
    GENERIC,
    PROVIDER_NAMES,
    PROVIDERS,
    ProviderSpec,
    load,
    stand_ins,
)
from payhooks.providers.authorizenet.settings import AuthorizeNetSettings
from payhooks.providers.epay.settings import EPaySettings
from payhooks.providers.gocardless.settings import GoCardlessSettings
from payhooks.providers.liqpay.settings import LiqPaySettings
from payhooks.providers.stripe.settings import StripeSettings
from payhooks.settings import ConfigError, ProviderSettings, Settings
from payhooks.settings.reading import variables
from payhooks.storage.trail import Trail
from service.providers import build_providers


def test_names_are_unique_url_segments_and_every_entry_is_complete() -> None:
    assert len(set(PROVIDER_NAMES)) == len(PROVIDER_NAMES)
    assert GENERIC.name not in PROVIDER_NAMES
    for spec in PROVIDERS:
        assert spec.name == spec.name.lower(), spec.name
        assert "/" not in spec.name
        assert spec.payment_providers, spec.name
        section = load(spec.settings)
        assert issubclass(section, ProviderSettings), spec.name
        assert section.ENABLED_BY in variables(section), spec.name
        assert set(section.WORKER_NEEDS) <= set(variables(section)), spec.name


@pytest.mark.parametrize("spec", PROVIDERS, ids=lambda spec: spec.name)
def test_each_part_an_entry_names_loads_with_the_shape_its_user_calls(
    spec: ProviderSpec, settings: Settings, redis: Redis
) -> None:
    receiver = load(spec.receiver).from_settings(settings)
    assert receiver.name == spec.name  # its URL and event keys
    if spec.worker_step is not None:
        step = load(spec.worker_step).from_settings(settings, redis, Trail(redis, ttl_seconds=60))
        assert callable(step)
    assert list(inspect.signature(load(spec.sample)).parameters) == ["request"]
    assert list(inspect.signature(load(spec.dev_environment)).parameters) == ["sandbox", "env"]
    assert settings.provider(load(spec.settings)).rows()
    if spec.probe is not None:
        checks = load(spec.probe)(settings.provider(load(spec.settings)), httpx.Client())
        assert all(callable(check) for _, check in checks)
    if spec.stand_in is not None:
        assert list(inspect.signature(load(spec.stand_in)).parameters) == ["app", "state"]


def test_the_receiver_serves_exactly_the_providers_the_settings_enable(settings: Settings) -> None:
    assert set(build_providers(settings)) == set(settings.enabled_providers())
    assert set(provider_rows(settings)) == set(settings.enabled_providers())
    only_liqpay = Settings(providers=(LiqPaySettings(private_keys=("key",)),))
    assert list(build_providers(only_liqpay)) == ["liqpay"]


def test_with_no_provider_the_receiver_names_every_variable_that_enables_one() -> None:
    with pytest.raises(ConfigError) as raised:
        Settings(redis_url="redis://localhost:6379/0").check_receiver()
    for spec in (*PROVIDERS, GENERIC):
        assert load(spec.settings).enabling_variable() in str(raised.value)


def test_stand_ins_shared_by_two_providers_are_served_once() -> None:
    # PayPal's webhook certificates and IPN postback are one stand-in.
    paths = [spec.stand_in for spec in PROVIDERS if spec.stand_in is not None]
    assert BY_NAME["paypal"].stand_in == BY_NAME["paypal-ipn"].stand_in
    assert len(paths) == len(set(paths)) + 1
    assert sorted(stand_ins().values()) == sorted(set(paths))
    assert "paypal" in stand_ins()


def test_check_config_names_only_the_missing_setting_a_providers_worker_step_needs() -> None:
    settings = Settings(
        providers=(
            GoCardlessSettings(webhook_secrets=("gc-secret",)),
            AuthorizeNetSettings(signature_keys=("anet-key",), login_id="login"),
            EPaySettings(md5_secrets=("md5-secret",), merchant_number="1234"),
            StripeSettings(webhook_secrets=("whsec_x",)),
        )
    )
    worker_problems = [p for p in problems(settings, "worker", {}) if " is set but " in p]
    assert worker_problems == [
        (
            "worker: GOCARDLESS_WEBHOOK_SECRETS is set but GOCARDLESS_ACCESS_TOKEN is not: "
            "no GoCardless payment could be confirmed"
        ),
        (
            "worker: AUTHORIZENET_SIGNATURE_KEYS is set but AUTHORIZENET_TRANSACTION_KEY is not: "
            "no Authorize.Net payment could be confirmed"
        ),
    ]
    assert not any(" is set but " in p for p in problems(settings, "serve", {}))
