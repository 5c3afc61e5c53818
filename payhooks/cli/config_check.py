"""`payhooks check-config`: what is configured (never a secret), and what is wrong with it.

Exit 2 when a role could not start or a value is still a placeholder from an example
file; with --probe, 1 when something configured could not be reached or refused us.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Mapping
from dataclasses import asdict
from typing import TYPE_CHECKING

from payhooks.cli.cli_output import emit, labelled, wrapped
from payhooks.cli.dev_state import DevInstance
from payhooks.domain.providers import BY_NAME, GENERIC, PROVIDERS, load
from payhooks.settings import ConfigError, Settings, redact_url

if TYPE_CHECKING:
    from payhooks.cli.probe import ProbeResult

Rows = list[tuple[str, str]]

#: Variables payhooks reads whose values can be left as an example's placeholder.
CHECKED_PREFIXES = tuple(
    dict.fromkeys(("REDIS_", "NEXUDUS_", *(spec.env_prefix for spec in (*PROVIDERS, GENERIC))))
)
#: What example files and templates put where a real value belongs. Matched case-blind
#: against each comma-separated item; example.com/org/net are reserved (RFC 2606), so no
#: real Nexudus user or PayPal account has such an address.
PLACEHOLDER = re.compile(
    r"replace[_-]?me|change[_-]?me|placeholder|fill[_-]?me|^your[_-]|<[^>]*>"
    r"|@example\.(com|org|net)$",
    re.IGNORECASE,
)


def placeholders(env: Mapping[str, str]) -> list[str]:
    """Names of the variables that still hold a placeholder (their values are not shown)."""
    found = []
    for name in sorted(env):
        if not name.startswith(CHECKED_PREFIXES):
            continue
        items = [item.strip() for item in env[name].split(",")]
        if any(PLACEHOLDER.search(item) for item in items if item):
            found.append(name)
    return found


def _set(value: object) -> str:
    return "set" if value else "not set"


def _count(values: object) -> str:
    return f"{len(values)} set" if isinstance(values, tuple | dict | list) else _set(values)


def stripe_rows(s: Settings) -> Rows:
    return [
        ("webhook secrets", _count(s.stripe_webhook_secrets)),
        ("signature tolerance", f"{s.stripe_tolerance_seconds} s"),
        ("API key", _set(s.stripe_api_key)),
        ("API", s.stripe_api_base or "Stripe's"),
        ("invoice metadata key", s.invoice_metadata_key),
    ]


def gocardless_rows(s: Settings) -> Rows:
    return [
        ("webhook secrets", _count(s.gocardless_webhook_secrets)),
        ("access token", _set(s.gocardless_access_token)),
        ("API", s.gocardless_base_url or s.gocardless_environment),
        ("paid on", s.gocardless_paid_action),
    ]


def braintree_rows(s: Settings) -> Rows:
    return [
        ("key pairs", _count(s.braintree_keys)),
        ("merchant id", s.braintree_merchant_id or "not set"),
        ("environment", s.braintree_environment),
        ("invoice field", s.braintree_invoice_field or "order_id"),
    ]


def authorizenet_rows(s: Settings) -> Rows:
    return [
        ("signature keys", _count(s.authorizenet_signature_keys)),
        ("API login id", _set(s.authorizenet_login_id)),
        ("transaction key", _set(s.authorizenet_transaction_key)),
        ("API", s.authorizenet_api_url),
        ("currency", s.authorizenet_currency),
    ]


def paypal_rows(s: Settings) -> Rows:
    return [
        ("webhook ids", _count(s.paypal_webhook_ids)),
        ("certificates from", ", ".join(s.paypal_cert_url_prefixes)),
        ("trusted roots", s.paypal_cert_trust_file or "the certifi bundle"),
        ("provider value", str(s.paypal_provider_value or "auto")),
    ]


def paypal_ipn_rows(s: Settings) -> Rows:
    return [
        ("receiver addresses", ", ".join(s.paypal_ipn_receiver_emails)),
        ("postback to", s.paypal_ipn_url),
    ]


def liqpay_rows(s: Settings) -> Rows:
    return [
        ("private keys", _count(s.liqpay_private_keys)),
        ("sandbox payments", "applied" if s.liqpay_allow_sandbox else "not applied"),
    ]


def epay_rows(s: Settings) -> Rows:
    return [
        ("MD5 secrets", _count(s.epay_md5_secrets)),
        ("merchant number", s.epay_merchant_number or "not set"),
        ("API password", _set(s.epay_api_password)),
        ("API", s.epay_api_url),
    ]


def generic_rows(settings: Settings, source: str) -> Rows:
    return [("secrets", _count(settings.generic_webhook_secrets[source]))]


def provider_rows(settings: Settings) -> dict[str, Rows]:
    """Each enabled provider's rows, as its registry entry names them."""
    rows: dict[str, Rows] = {}
    for name in settings.enabled_providers():
        if name.startswith("generic/"):
            rows[name] = load(GENERIC.config_rows)(settings, name.removeprefix("generic/"))
        else:
            rows[name] = load(BY_NAME[name].config_rows)(settings)
    return rows


def general_rows(settings: Settings) -> Rows:
    return [
        ("Redis", redact_url(settings.redis_url) if settings.redis_url else "not set"),
        ("queue", settings.queue_name),
        ("providers enabled", ", ".join(settings.enabled_providers()) or "none"),
        ("Nexudus", settings.nexudus_base_url),
        ("Nexudus user", settings.nexudus_username or "not set"),
        ("Nexudus password", _set(settings.nexudus_password)),
        (
            "Nexudus limits",
            (
                f"{settings.nexudus_writes_per_minute} writes/min, "
                f"{settings.nexudus_writes_per_day} writes/day, "
                f"{settings.nexudus_calls_per_minute} calls/min"
            ),
        ),
        ("job attempts", str(settings.job_max_attempts)),
        (
            "retention",
            (
                f"events {settings.event_retention_days} d, "
                f"failed jobs {settings.failed_job_retention_days} d"
            ),
        ),
    ]


def problems(settings: Settings, role: str, env: Mapping[str, str]) -> list[str]:
    found = []
    for name, check in (("serve", settings.check_receiver), ("worker", settings.check_worker)):
        if role in (name, "all"):
            try:
                check()
            except ConfigError as exc:
                found.append(f"{name}: {exc}")
    if role in ("worker", "all"):
        found += _missing_for_worker(settings)
    found += [
        f"{name} still holds a placeholder from an example file: put the real value in"
        for name in placeholders(env)
    ]
    return found


def _missing_for_worker(settings: Settings) -> list[str]:
    """Providers enabled without what their worker step needs to confirm a payment."""
    found = []
    for spec in PROVIDERS:
        missing = [
            variable for field, variable in spec.worker_needs if not getattr(settings, field)
        ]
        if missing and getattr(settings, spec.enabled_by):
            found.append(
                f"worker: {spec.enabled_by_env} is set but {' or '.join(missing)} is not: "
                f"no {spec.display_name} payment could be confirmed"
            )
    return found


def check_config(
    settings: Settings,
    *,
    role: str,
    probe: bool = False,
    as_json: bool = False,
    dev: DevInstance | None = None,
    env: Mapping[str, str] | None = None,
) -> int:
    """Print what is configured, never a secret; exit 2 if a role cannot start."""
    found = problems(settings, role, os.environ if env is None else env)
    general = general_rows(settings)
    providers = provider_rows(settings)
    results: list[ProbeResult] = []
    if probe:
        from payhooks.cli.probe import probe as run_probe

        results = run_probe(settings)
    unreachable = [r for r in results if not (r.ok or r.skipped)]
    valid = not found and not unreachable
    exit_code = 2 if found else 1 if unreachable else 0
    if as_json:
        emit(
            {
                "valid": valid,
                "role": role,
                "dev_instance": dev.path if dev else None,
                "settings": dict(general),
                "providers": {name: dict(rows) for name, rows in providers.items()},
                "problems": found,
                "probe": [dict(asdict(r), result=r.result) for r in results] if probe else None,
            }
        )
        return exit_code
    if dev is not None:
        print(labelled("settings of", f"the running `payhooks dev` ({dev.path})", width=28))
    for label, value in general:
        print(labelled(label, value, width=28))
    for name, rows in providers.items():
        print(name)
        for label, value in rows:
            print(labelled(label, value, width=26, indent="  "))
    if probe:
        print()
        width = max(len(r.target) for r in results)
        print(f"{'PROBE':<{width}}  RESULT  DETAIL")
        for r in results:
            print(wrapped(r.detail, lead=f"{r.target:<{width}}  {r.result:<7} "))
    for problem in found:
        print(f"problem: {problem}", file=sys.stderr)
    if not found:  # the problems, on stderr, are the verdict
        print(wrapped(_verdict(role, probe=probe, results=results)))
    return exit_code


def _verdict(role: str, *, probe: bool, results: list[ProbeResult]) -> str:
    """The closing line of a valid configuration: probed, what answered and what was not
    checked."""
    scope = "" if role == "all" else f" for {role}"
    if not probe:
        return (
            f"configuration is valid{scope} (nothing was reached: --probe tries Redis, "
            "Nexudus and the provider APIs)"
        )
    skipped = [r.target for r in results if r.skipped]
    if any(not (r.ok or r.skipped) for r in results):
        verdict = f"configuration is valid{scope}, but not everything answered (see the probe)"
    else:
        verdict = f"configuration is valid{scope} and everything probed answered"
    if skipped:
        verdict += f"; skipped, so not checked: {', '.join(skipped)}"
    return verdict
