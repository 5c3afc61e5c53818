"""The provider registry: every provider in the domain's list has its parts in the typed tables
of payhooks/providers/, each part in its own package under the name its kind takes, and each
has the shape its user calls."""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable, Mapping
from typing import Any

import httpx
import pytest
from redis import Redis

from payhooks.cli.config_check import problems, provider_rows
from payhooks.domain.events import RegularPaymentProvider
from payhooks.domain.providers import BY_NAME, GENERIC, PROVIDER_NAMES, PROVIDERS, ProviderSpec
from payhooks.providers.authorizenet.settings import AuthorizeNetSettings
from payhooks.providers.epay.settings import EPaySettings
from payhooks.providers.gocardless.settings import GoCardlessSettings
from payhooks.providers.liqpay.settings import LiqPaySettings
from payhooks.providers.pollers import POLLERS
from payhooks.providers.receivers import RECEIVERS, SOURCE_RECEIVER, build_providers
from payhooks.providers.sections import SECTIONS
from payhooks.providers.stripe.settings import StripeSettings
from payhooks.providers.tools import STAND_INS, TOOLS
from payhooks.providers.worker_steps import WORKER_STEPS
from payhooks.settings import ConfigError, Intake, ProviderSettings, Settings
from payhooks.settings.reading import variables
from payhooks.storage.trail import Trail
from tests.support.paths import REPO


def test_names_are_unique_url_segments_and_every_entry_is_complete() -> None:
    assert len(set(PROVIDER_NAMES)) == len(PROVIDER_NAMES)
    assert GENERIC.name not in PROVIDER_NAMES
    for spec in PROVIDERS:
        assert spec.name == spec.name.lower(), spec.name
        assert "/" not in spec.name
        assert spec.payment_providers, spec.name
        section = SECTIONS[spec.name]
        assert issubclass(section, ProviderSettings), spec.name
        # Each intake it declares is turned on by one of its variables, and has its part.
        assert section.intakes(), spec.name
        assert set(section.intakes().values()) <= set(variables(section)), spec.name
        assert (Intake.WEBHOOK in section.intakes()) == (spec.name in RECEIVERS), spec.name
        assert (Intake.POLL in section.intakes()) == (spec.name in POLLERS), spec.name
        assert set(section.WORKER_NEEDS) <= set(variables(section)), spec.name


@pytest.mark.parametrize("spec", PROVIDERS, ids=lambda spec: spec.name)
def test_each_part_a_table_lists_has_the_shape_its_user_calls(
    spec: ProviderSpec, settings: Settings, redis: Redis
) -> None:
    if spec.name in RECEIVERS:
        receiver = RECEIVERS[spec.name](settings)
        assert receiver.name == spec.name  # its URL and event keys
    if spec.name in POLLERS:
        poller = POLLERS[spec.name].build(settings)
        assert poller.name == spec.name  # its event keys
        assert poller.interval_seconds > 0
    if spec.name in WORKER_STEPS:
        step = WORKER_STEPS[spec.name](settings, redis, Trail(redis, ttl_seconds=60))
        assert callable(step)
    if spec.name not in TOOLS:
        assert spec.name not in RECEIVERS  # only a poll-only provider has no sample
        return
    tools = TOOLS[spec.name]
    assert list(inspect.signature(tools.sample).parameters) == ["request"]
    assert list(inspect.signature(tools.dev_environment).parameters) == ["sandbox", "env"]
    assert settings.provider(SECTIONS[spec.name]).rows()
    if tools.probe is not None:
        checks = tools.probe(settings, httpx.Client())
        assert all(callable(check) for _, check in checks)
    for add_routes in STAND_INS.values():
        assert list(inspect.signature(add_routes).parameters) == ["app", "state"]


def _home(part: Any) -> tuple[str, str]:
    """The provider package and the module a part is defined in (payhooks/providers/<p>/<m>)."""
    owner = getattr(part, "__self__", part)  # a factory: the class its from_settings builds
    module = owner.__module__
    root, providers, package, name = module.split(".")
    assert (root, providers) == ("payhooks", "providers"), module
    return package, name


TABLES: Mapping[str, Callable[[], list[Any]]] = {
    "settings": lambda: list(SECTIONS.values()),
    "receiver": lambda: [*RECEIVERS.values(), SOURCE_RECEIVER],
    "step": lambda: list(WORKER_STEPS.values()),
    "poller": lambda: [intake.build for intake in POLLERS.values()],
    "sample": lambda: [tools.sample for tools in TOOLS.values()],
    "stand_in": lambda: list(STAND_INS.values()),
}


def test_every_provider_module_is_in_its_table_and_every_table_entry_in_its_module() -> None:
    """The convention: a provider's settings.py, receiver.py, step.py, sample.py and
    stand_in.py (PayPal's IPN: ipn_receiver.py, ipn_step.py) are each listed in the table of
    their kind, and every entry of a table lives in a module of that kind."""
    packages = sorted(
        p.name
        for p in (REPO / "payhooks" / "providers").iterdir()
        if (p / "__init__.py").exists() and p.name != "kit"
    )
    for kind, entries in TABLES.items():
        homes = {_home(part) for part in entries()}
        for package, module in homes:
            assert module.removeprefix("ipn_") == kind, (kind, package, module)
        for package in packages:
            for module in (kind, f"ipn_{kind}"):
                if (REPO / "payhooks" / "providers" / package / f"{module}.py").exists():
                    assert (package, module) in homes, f"{package}/{module}.py is in no table"
    probes = [
        package
        for package in packages
        if (REPO / "payhooks/providers" / package / "probe.py").exists()
    ]
    assert len(probes) == sum(tools.probe is not None for tools in TOOLS.values())
    names = [*PROVIDER_NAMES, GENERIC.name]
    assert list(SECTIONS) == names
    # A sample for every provider with a webhook; one that is only polled may have one too
    # (EziDebit's registers a payment with its stand-in for the next poll).
    assert list(TOOLS) == [name for name in names if name in TOOLS]
    assert {name for name in names if name in RECEIVERS or name == GENERIC.name} <= set(TOOLS)
    assert list(RECEIVERS) == [name for name in PROVIDER_NAMES if name in RECEIVERS]
    assert set(RECEIVERS) | set(POLLERS) == set(PROVIDER_NAMES)
    assert set(WORKER_STEPS) < set(PROVIDER_NAMES)


def test_every_nexudus_payment_provider_value_is_reachable() -> None:
    """Each eRegularPaymentProvider value is some provider's, or one an operator's own
    system may name in its notification (the published schema's enum)."""
    schema = json.loads(
        (REPO / "payhooks/domain/schemas/payment-notification.schema.json").read_text()
    )
    sources = set(schema["properties"]["provider"]["enum"])
    providers = {int(value) for spec in PROVIDERS for value in spec.payment_providers}
    assert providers | sources == {int(value) for value in RegularPaymentProvider}
    assert RegularPaymentProvider.MULTI_GATEWAY in PROVIDERS[-1].payment_providers  # Spreedly
    assert RegularPaymentProvider.EZIDEBIT in BY_NAME["ezidebit"].payment_providers


def test_the_receiver_serves_exactly_the_providers_the_settings_enable(settings: Settings) -> None:
    assert set(build_providers(settings)) == set(settings.enabled_providers())
    assert set(provider_rows(settings)) == set(settings.enabled_providers())
    only_liqpay = Settings(providers=(LiqPaySettings(private_keys=("key",)),))
    assert list(build_providers(only_liqpay)) == ["liqpay"]


def test_with_no_provider_the_receiver_names_every_variable_that_enables_one() -> None:
    with pytest.raises(ConfigError) as raised:
        Settings(redis_url="redis://localhost:6379/0").check_receiver()
    for spec in (*PROVIDERS, GENERIC):
        assert SECTIONS[spec.name].enabling_variable() in str(raised.value)


def test_stand_ins_shared_by_two_providers_are_served_once() -> None:
    # PayPal's webhook certificates and IPN postback are one stand-in.
    homes = [_home(add_routes)[0] for add_routes in STAND_INS.values()]
    assert len(homes) == len(set(homes))
    assert list(STAND_INS) == homes  # each by its package's name
    assert "paypal" in STAND_INS
    assert "paypal-ipn" not in STAND_INS


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
