"""Settings: each variable and its default written once, one section per provider."""

from __future__ import annotations

import dataclasses

import pytest

from payhooks.domain.providers import GENERIC, PROVIDERS
from payhooks.providers.braintree.settings import BraintreeSettings
from payhooks.providers.sections import SECTIONS
from payhooks.providers.stripe.settings import StripeSettings
from payhooks.settings import ConfigError, Settings, every_variable, section_classes
from payhooks.settings.reading import variables


def test_an_empty_environment_gives_the_defaults_the_classes_declare() -> None:
    # One default per setting: what an unset variable means is the field's own default.
    read = Settings.from_env({})
    assert dataclasses.replace(read, providers=()) == Settings()
    for section in section_classes():
        assert read.provider(section) == section()


def test_every_field_is_read_from_a_variable_of_its_own() -> None:
    classes: list[type] = [Settings, *section_classes()]
    for cls in classes:
        unread = {f.name for f in dataclasses.fields(cls)} - set(variables(cls)) - {"providers"}
        assert unread == set(), cls.__name__
    names = [v for cls in classes for v in variables(cls).values()]
    assert len(names) == len(set(names)) == len(every_variable())


def test_each_registry_entry_has_its_own_section() -> None:
    sections = [SECTIONS[spec.name] for spec in (*PROVIDERS, GENERIC)]
    assert len(set(sections)) == len(sections)
    assert list(section_classes()) == sections


def test_a_section_not_given_is_its_provider_switched_off() -> None:
    settings = Settings(providers=(StripeSettings(webhook_secrets=("whsec_x",)),))
    assert settings.enabled_providers() == ["stripe"]
    assert settings.provider(BraintreeSettings) == BraintreeSettings()
    changed = settings.with_provider(StripeSettings())
    assert changed.enabled_providers() == []
    assert settings.enabled_providers() == ["stripe"]  # frozen: the original is unchanged


def test_a_sections_own_check_runs_when_the_receiver_starts() -> None:
    settings = Settings.from_env(
        {"REDIS_URL": "redis://localhost:6379/0", "BRAINTREE_KEYS": "public:private"}
    )
    with pytest.raises(ConfigError, match="BRAINTREE_MERCHANT_ID is required"):
        settings.check_receiver()


def test_the_worker_names_the_missing_nexudus_credential() -> None:
    settings = Settings.from_env({"REDIS_URL": "redis://localhost:6379/0", "NEXUDUS_USERNAME": "u"})
    with pytest.raises(ConfigError, match="NEXUDUS_PASSWORD is required"):
        settings.check_worker()
    assert Settings(nexudus_username="u", nexudus_password="p").nexudus_credentials() == ("u", "p")


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"STRIPE_TOLERANCE_SECONDS": "soon"}, "STRIPE_TOLERANCE_SECONDS must be a whole number"),
        ({"GOCARDLESS_ENVIRONMENT": "staging"}, "GOCARDLESS_ENVIRONMENT must be one of"),
        ({"BRAINTREE_KEYS": "public-only"}, "BRAINTREE_KEYS takes public_key:private_key"),
        ({"PAYPAL_PROVIDER_VALUE": "7"}, "PAYPAL_PROVIDER_VALUE must be one of auto, 5, 6"),
        ({"EPAY_API_URL": "not a url"}, "EPAY_API_URL must be a URL"),
    ],
)
def test_a_malformed_provider_variable_is_named(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Settings.from_env(env)


def test_the_worker_checks_each_section_too() -> None:
    # A malformed organization id would go into every Forte API path the worker calls.
    settings = Settings.from_env(
        {
            "REDIS_URL": "redis://localhost:6379/0",
            "NEXUDUS_USERNAME": "u",
            "NEXUDUS_PASSWORD": "p",
            "FORTE_WEBHOOK_TOKENS": "Zx9-q2Lm_7Rt4vBn8Kp3Wd6Hy1Jc5Gs0",
            "FORTE_ORGANIZATION_ID": "333251",
        }
    )
    with pytest.raises(ConfigError, match="FORTE_ORGANIZATION_ID must be Forte's organization id"):
        settings.check_worker()


@pytest.mark.parametrize("variable", ["FORTE_CURRENCY", "AUTHORIZENET_CURRENCY"])
def test_a_currency_is_a_three_letter_code(variable: str) -> None:
    assert Settings.from_env({variable: "eur"}) is not None
    with pytest.raises(ConfigError, match=f"{variable} must be a three-letter currency code"):
        Settings.from_env({variable: "dollars"})
