"""`payhooks check-config`: placeholders, a section per enabled provider, and --probe
against the sandbox's stand-ins for Nexudus and the providers' APIs."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from payhooks.cli.config_check import check_config, problems
from payhooks.devtools.sandbox.server import ThreadedServer
from payhooks.domain.providers import PROVIDER_NAMES
from payhooks.providers.authorizenet.settings import AuthorizeNetSettings
from payhooks.providers.braintree import sample as braintree_samples
from payhooks.providers.braintree.settings import BraintreeSettings
from payhooks.providers.epay.settings import EPaySettings
from payhooks.providers.gocardless.settings import GoCardlessSettings
from payhooks.providers.gocardless.stand_in import ACCESS_TOKEN
from payhooks.providers.paypal.settings import PAYPAL_CERT_URL_PREFIXES, PayPalSettings
from payhooks.providers.paypal.stand_in import CLIENT_ID as PAYPAL_CLIENT_ID
from payhooks.providers.paypal.stand_in import CLIENT_SECRET as PAYPAL_CLIENT_SECRET
from payhooks.providers.stripe.settings import StripeSettings
from payhooks.providers.stripe.stand_in import API_KEY as STRIPE_KEY
from payhooks.settings import Settings
from tests.support.paths import REPO
from tests.support.settings import with_section, with_settings

ENV_EXAMPLE = REPO / "deploy" / "compose" / ".env.example"
Captured = pytest.CaptureFixture[str]


def env_file(path: Path) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)
    return {name.strip(): value.strip() for name, value in pairs if not name.startswith("#")}


def test_the_compose_example_as_shipped_is_not_valid(capsys: Captured) -> None:
    env = {**env_file(ENV_EXAMPLE), "REDIS_URL": "redis://redis:6379/0"}  # as compose sets it
    code = check_config(Settings.from_env(env), role="all", env=env)
    out, err = capsys.readouterr()
    assert code == 2
    assert "configuration is valid" not in out
    for name in ("STRIPE_WEBHOOK_SECRETS", "NEXUDUS_PASSWORD", "NEXUDUS_USERNAME"):
        assert f"{name} still holds a placeholder" in err
    assert "replace_me" not in out + err  # the value is not echoed, whatever it is


def test_every_enabled_provider_gets_its_rows(settings: Settings, capsys: Captured) -> None:
    code = check_config(settings, role="all", as_json=True, env={})
    report = json.loads(capsys.readouterr().out)
    assert code == 0
    # Every provider with a URL or a poll (EziDebit has only a poll), and generic/bank.
    assert set(report["providers"]) == set(settings.enabled_providers()) | {"ezidebit"}
    assert set(PROVIDER_NAMES) < set(report["providers"])
    assert (
        report["providers"]["epay"]["merchant number"]
        == settings.provider(EPaySettings).merchant_number
    )
    assert report["providers"]["authorizenet"]["transaction key"] == "set"
    assert report["providers"]["generic/bank"]["secrets"] == "2 set"


def test_probe_reaches_each_api_read_only_and_prints_no_secret(
    settings: Settings, sandbox: ThreadedServer, capsys: Captured
) -> None:
    configured = with_section(
        with_section(settings, StripeSettings, api_key=STRIPE_KEY, api_base=sandbox.url),
        BraintreeSettings,
        keys=(),
    )
    configured = with_section(
        configured,
        PayPalSettings,
        client_id=PAYPAL_CLIENT_ID,
        client_secret=PAYPAL_CLIENT_SECRET,
        api_base=sandbox.url,
    )
    code = check_config(configured, role="all", probe=True, env={})
    out, err = capsys.readouterr()
    assert code == 0, out + err
    rows = {line.split("  ")[0].strip(): line for line in out.splitlines()}
    for target in (
        "Redis",
        "Nexudus",
        "Stripe API key",
        "GoCardless access token",
        "Authorize.Net API login",
        "PayPal REST client id and secret",
    ):
        assert " ok " in rows[target], rows
    # ePay answers a wrong merchant as it answers the right one: it answered, nothing more.
    assert " reachable " in rows["ePay web service"], rows
    verdict = " ".join(out.split("configuration is valid", 1)[1].split())
    # Forte has no read-only call to make: listed as skipped, never as answered.
    assert verdict == (
        "and everything probed answered; reachable, credentials not proven: ePay web service; "
        "skipped, so not checked: Forte API credentials"
    )
    assert "skipped" in rows["Forte API credentials"]
    secrets = (
        settings.nexudus_password,
        STRIPE_KEY,
        ACCESS_TOKEN,
        settings.provider(AuthorizeNetSettings).transaction_key,
        PAYPAL_CLIENT_SECRET,
    )
    for secret in secrets:
        assert secret is not None
        assert secret not in out + err


def test_probe_reports_refused_credentials_and_unreachable_services(
    settings: Settings, sandbox: ThreadedServer, capsys: Captured
) -> None:
    wrong = with_settings(settings, nexudus_password="not-the-password")
    wrong = with_section(wrong, GoCardlessSettings, access_token="not-the-token")
    wrong = with_section(wrong, AuthorizeNetSettings, transaction_key="not-the-key")
    wrong = with_section(wrong, BraintreeSettings, keys=())
    wrong = with_section(
        wrong,
        PayPalSettings,
        client_id=PAYPAL_CLIENT_ID,
        client_secret="not-the-secret",
        api_base=sandbox.url,
    )
    assert check_config(wrong, role="all", probe=True, as_json=True, env={}) == 1
    report = json.loads(capsys.readouterr().out)
    results = {r["target"]: r for r in report["probe"]}
    assert results["Nexudus"]["result"] == "FAILED"
    assert "invalid_grant" in results["Nexudus"]["detail"]
    assert results["GoCardless access token"]["detail"] == "token refused"
    assert "E00007" in results["Authorize.Net API login"]["detail"]
    assert results["PayPal REST client id and secret"]["detail"] == "client id or secret refused"
    assert results["Redis"]["result"] == "ok"
    assert report["valid"] is False
    assert "not-the-" not in json.dumps(report)

    gone = with_section(
        with_settings(settings, redis_url="redis://:hunter2@127.0.0.1:1/0"),
        BraintreeSettings,
        keys=(),
    )
    assert check_config(gone, role="all", probe=True, as_json=True, env={}) == 1
    redis = next(r for r in json.loads(capsys.readouterr().out)["probe"] if r["target"] == "Redis")
    assert redis["detail"] == "could not reach redis://:***@127.0.0.1:1/0 (ConnectionError)"


def test_text_fits_100_columns_and_the_verdict_says_what_was_skipped(
    settings: Settings, capsys: Captured
) -> None:
    # Every provider and a generic source enabled, PayPal's own certificate URLs, and the
    # dev Braintree sample keys, which the probe skips (nothing to call with them).
    everything = with_section(
        with_section(settings, PayPalSettings, cert_url_prefixes=PAYPAL_CERT_URL_PREFIXES),
        BraintreeSettings,
        keys=((braintree_samples.DEV_PUBLIC_KEY, braintree_samples.DEV_PRIVATE_KEY),),
    )
    assert check_config(everything, role="all", probe=True, env={}) == 0
    out = capsys.readouterr().out
    assert [line for line in out.splitlines() if len(line) > 100] == []
    assert " ".join(out.split("configuration is valid", 1)[1].split()) == (
        "and everything probed answered; reachable, credentials not proven: ePay web service; "
        "skipped, so not checked: Braintree key 1, Forte API credentials"
    )
    # Wrapped, not cut: every provider and every certificate prefix is there whole.
    words = out.split()
    for name in everything.enabled_providers():
        assert f"{name}," in words or name in words
    for prefix in PAYPAL_CERT_URL_PREFIXES:
        assert f"{prefix}," in words or prefix in words
    assert check_config(everything, role="all", probe=True, as_json=True, env={}) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["settings"]["providers enabled"] == ", ".join(everything.configured_providers())


def test_a_misspelled_or_placeholder_variable_named_like_ours_is_a_problem(
    settings: Settings,
) -> None:
    env = {
        "STRIPE_WEBHOOK_SECRET": "whsec_REPLACE_ME",  # one letter short of ours
        "NEXUDUS_USER": "api@coworking.test",
        "REDIS_ADDRESS": "redis.internal:6380",  # the Kubernetes manifests' own: not ours
        "HOME": "/root",
    }
    found = problems(settings, "all", env)
    assert (
        "STRIPE_WEBHOOK_SECRET is not a variable payhooks reads: did you mean "
        "STRIPE_WEBHOOK_SECRETS?"
    ) in found
    assert "NEXUDUS_USER is not a variable payhooks reads: did you mean NEXUDUS_USERNAME?" in found
    assert any(p.startswith("STRIPE_WEBHOOK_SECRET still holds a placeholder") for p in found)
    assert not any("REDIS_ADDRESS" in p or "HOME" in p for p in found)
    assert not any("REPLACE_ME" in p for p in found)


def test_a_near_name_without_our_prefix_or_in_lower_case_is_a_problem(
    settings: Settings,
) -> None:
    env = {
        "STRIP_WEBHOOK_SECRETS": "whsec_x",  # not named like ours, but nearly one of ours
        "stripe_webhook_secrets": "whsec_y",  # ours, in the wrong case: not read
        "nexudus_password": "secret",
        "KUBERNETES_SERVICE_HOST": "10.0.0.1",  # a pod's environment is left alone
        "PAYHOOKS_RECEIVER_PORT": "tcp://10.0.0.2:80",
        "PATH": "/usr/bin",
    }
    found = problems(settings, "all", env)
    assert found == [
        (
            "STRIP_WEBHOOK_SECRETS is not a variable payhooks reads: did you mean "
            "STRIPE_WEBHOOK_SECRETS?"
        ),
        (
            "nexudus_password is not a variable payhooks reads (names are upper case): did you "
            "mean NEXUDUS_PASSWORD?"
        ),
        (
            "stripe_webhook_secrets is not a variable payhooks reads (names are upper case): did "
            "you mean STRIPE_WEBHOOK_SECRETS?"
        ),
    ]


def test_a_failing_check_ends_with_its_verdict_within_100_columns(capsys: Captured) -> None:
    env = {
        **env_file(ENV_EXAMPLE),
        "REDIS_URL": "redis://redis:6379/0",
        "STRIP_WEBHOOK_SECRETS": "whsec_x",
    }
    code = check_config(Settings.from_env(env), role="all", env=env)
    out, err = capsys.readouterr()
    assert code == 2
    lines = err.splitlines()
    assert [line for line in (out + err).splitlines() if len(line) > 100] == []
    count = sum(line.startswith("problem: ") for line in lines)
    assert count >= 4
    assert lines[-1] == f"{count} problems: the configuration is not valid"
    # Wrapped, not cut: every problem's words are all there.
    assert "did you mean STRIPE_WEBHOOK_SECRETS?" in " ".join(err.split())


def test_payhooks_devs_public_sample_secrets_are_a_problem_outside_dev(settings: Settings) -> None:
    from payhooks.providers.forte import sample as forte
    from payhooks.providers.generic import sample as generic
    from payhooks.providers.stripe import sample as stripe

    env = {
        "STRIPE_WEBHOOK_SECRETS": f"whsec_mine,{stripe.DEV_WEBHOOK_SECRET}",
        "FORTE_WEBHOOK_TOKENS": forte.DEV_URL_TOKEN,
        "GENERIC_WEBHOOK_SECRETS": f"bank:{generic.DEV_SECRET}",
    }
    found = [p for p in problems(settings, "all", env) if "sample secret" in p]
    assert [p.split()[0] for p in found] == sorted(env)
    assert not any(stripe.DEV_WEBHOOK_SECRET in p for p in found)
    # Next to a running `payhooks dev` its own secrets are expected.
    assert not any("sample secret" in p for p in problems(settings, "all", env, dev=True))


def test_a_provider_given_settings_but_not_the_one_that_enables_it_is_a_problem() -> None:
    half = Settings.from_env(
        {
            "REDIS_URL": "redis://localhost:6379/0",
            "STRIPE_WEBHOOK_SECRETS": "whsec_x",
            "FORTE_API_ACCESS_ID": "access",
            "FORTE_ORGANIZATION_ID": "org_300005",
        }
    )
    expected = (
        "serve: FORTE_API_ACCESS_ID is set but FORTE_WEBHOOK_TOKENS is not: that provider's "
        "URL does not exist"
    )
    assert [p for p in problems(half, "serve", {}) if "URL does not exist" in p] == [expected]


def test_fortes_api_key_never_travels_over_plain_http() -> None:
    env = {
        "REDIS_URL": "redis://localhost:6379/0",
        "FORTE_WEBHOOK_TOKENS": "Zx9-q2Lm_7Rt4vBn8Kp3Wd6Hy1Jc5Gs0",
    }
    for url, refused in (
        ("http://api.forte.net/v3", True),
        ("HTTP://api.forte.net/v3", True),
        ("http://127.0.0.1:8090/forte/v3", False),
        ("https://sandbox.forte.net/api/v3", False),
    ):
        problem = [
            p for p in problems(Settings.from_env({**env, "FORTE_API_URL": url}), "serve", {})
        ]
        assert any("FORTE_API_URL must be https://" in p for p in problem) is refused, url


def test_redis_tls_and_sentinel_password_are_shown_without_secrets(
    settings: Settings, capsys: Captured, tmp_path: Path
) -> None:
    ca = tmp_path / "ca.crt"
    ca.write_text("not read here")
    over_tls = dataclasses.replace(
        settings,
        redis_url="rediss+sentinel://:data-pw@s1:26379,s2:26379/payhooks/0",
        redis_sentinel_password="sentinel-pw",
        redis_tls_ca_file=str(ca),
        redis_tls_check_hostname=False,
    )
    check_config(over_tls, role="all", as_json=True, env={})
    out = capsys.readouterr().out
    shown = json.loads(out)["settings"]
    assert shown["Redis"] == "rediss+sentinel://:***@s1:26379,s2:26379/payhooks/0"
    assert shown["Redis TLS"] == f"CA {ca}, no client certificate, host name NOT checked"
    assert shown["Sentinel password"] == "set"
    assert "data-pw" not in out
    assert "sentinel-pw" not in out
    # Plain Redis: no TLS row, no Sentinel row.
    check_config(settings, role="all", as_json=True, env={})
    assert {"Redis TLS", "Sentinel password"}.isdisjoint(
        json.loads(capsys.readouterr().out)["settings"]
    )
