"""`payhooks check-config`: what is configured (never a secret), and what is wrong with it.

Exit 2 when a role could not start or a value is still a placeholder from an example
file; with --probe, 1 when something configured could not be reached or refused us.
"""

from __future__ import annotations

import difflib
import os
import re
import sys
from collections.abc import Mapping
from dataclasses import asdict
from functools import cache
from typing import TYPE_CHECKING

from payhooks.cli.cli_output import emit, labelled, wrapped
from payhooks.devtools.dev_state import DevInstance
from payhooks.domain.providers import PROVIDERS
from payhooks.providers.generic.settings import GenericSettings
from payhooks.providers.sections import SECTIONS
from payhooks.settings import ConfigError, Settings, every_variable, redact_url, section_classes
from payhooks.settings.reading import Rows, is_set, secret_variables, variables

if TYPE_CHECKING:
    from payhooks.cli.probe import ProbeResult


#: What example files and templates put where a real value belongs. Matched case-blind
#: against each comma-separated item; example.com/org/net are reserved (RFC 2606), so no
#: real Nexudus user or PayPal account has such an address.
PLACEHOLDER = re.compile(
    r"replace[_-]?me|change[_-]?me|placeholder|fill[_-]?me|^your[_-]|<[^>]*>"
    r"|@example\.(com|org|net)$",
    re.IGNORECASE,
)


@cache
def _our_names() -> tuple[frozenset[str], tuple[str, ...]]:
    """The variables payhooks reads, and their prefixes (fixed by the settings classes)."""
    read = frozenset(every_variable())
    return read, tuple({v.split("_")[0] + "_" for v in read})


def _ours(name: str) -> bool:
    """A variable payhooks reads, or one named like them (``STRIPE_…``, ``REDIS_…``)."""
    read, prefixes = _our_names()
    return name in read or name.startswith(prefixes)


#: The sample secrets `payhooks dev` signs with (the providers' sample.py): public, in
#: this repository, so never a production value. ("cGF5aG9va3MtZGV2LW9ubHk" is base64 of
#: "payhooks-dev-only", the generic sources' secret.)
DEV_ONLY = re.compile(r"payhooks[_-]dev[_-]only|cGF5aG9va3MtZGV2LW9ubHk", re.IGNORECASE)


def dev_values(env: Mapping[str, str]) -> list[str]:
    """Names of the variables holding one of `payhooks dev`'s public sample secrets."""
    return [name for name in sorted(env) if _ours(name) and DEV_ONLY.search(env[name])]


def half_configured(settings: Settings) -> list[str]:
    """Providers given credentials but not the setting that turns them on: someone meant to
    use them, and their URL does not exist. (Other leftovers, such as a merchant id, are not
    a sign of that.)"""
    found = []
    for section_class in section_classes():
        section = settings.provider(section_class)
        if section.enabled:
            continue
        secrets = secret_variables(section_class)
        given = [
            variable
            for field, variable in variables(section_class).items()
            if variable in secrets and getattr(section, field)
        ]
        if given:
            found.append(
                f"serve: {' and '.join(given)} {'is' if len(given) == 1 else 'are'} set but "
                f"{section_class.enabling_variable()} is not: that provider's URL does not exist"
            )
    return found


def placeholders(env: Mapping[str, str]) -> list[str]:
    """Names of the variables that still hold a placeholder (their values are not shown)."""
    found = []
    for name in sorted(env):
        if not _ours(name):
            continue
        items = [item.strip() for item in env[name].split(",")]
        if any(PLACEHOLDER.search(item) for item in items if item):
            found.append(name)
    return found


def misspelled(env: Mapping[str, str]) -> list[str]:
    """Variables that payhooks does not read but nearly one it does: the setting meant is
    not applied (``STRIPE_WEBHOOK_SECRET`` for ``…_SECRETS``, ``STRIP_WEBHOOK_SECRETS``,
    ``stripe_webhook_secrets``: names are case-sensitive)."""
    read = sorted(_our_names()[0])
    found = []
    for name in sorted(env):
        if name in read:
            continue
        upper = name.upper()
        if upper in read:
            found.append(
                f"{name} is not a variable payhooks reads (names are upper case): did you "
                f"mean {upper}?"
            )
            continue
        # Named like ours (a prefix of ours): a near name is a slip. Otherwise only a very
        # near one is, so that the rest of a pod's environment is left alone.
        cutoff = 0.85 if _ours(upper) else 0.9
        near = difflib.get_close_matches(upper, read, n=1, cutoff=cutoff)
        if near:
            found.append(f"{name} is not a variable payhooks reads: did you mean {near[0]}?")
    return found


def provider_rows(settings: Settings) -> dict[str, Rows]:
    """Each enabled provider's rows, from its settings section."""
    rows: dict[str, Rows] = {}
    for name in settings.enabled_providers():
        if name.startswith("generic/"):
            generic = settings.provider(GenericSettings)
            rows[name] = generic.source_rows(name.removeprefix("generic/"))
        else:
            rows[name] = settings.provider(SECTIONS[name]).rows()
    return rows


def redis_rows(settings: Settings) -> Rows:
    """Where Redis is, and how it is reached: the TLS files by path, passwords as set."""
    url = settings.redis_url
    rows = [("Redis", redact_url(url) if url else "not set")]
    if url and url.startswith("rediss"):
        tls = [
            f"CA {settings.redis_tls_ca_file}" if settings.redis_tls_ca_file else "system CAs",
            f"client certificate {settings.redis_tls_cert_file}"
            if settings.redis_tls_cert_file
            else "no client certificate",
            "host name checked" if settings.redis_tls_check_hostname else "host name NOT checked",
        ]
        rows.append(("Redis TLS", ", ".join(tls)))
    if url and "+sentinel" in url.partition("://")[0]:
        rows.append(("Sentinel password", is_set(settings.redis_sentinel_password)))
    return rows


def general_rows(settings: Settings) -> Rows:
    return [
        *redis_rows(settings),
        ("queue", settings.queue_name),
        ("providers enabled", ", ".join(settings.enabled_providers()) or "none"),
        ("Nexudus", settings.nexudus_base_url),
        ("Nexudus user", settings.nexudus_username or "not set"),
        ("Nexudus password", is_set(settings.nexudus_password)),
        (
            "Nexudus limits",
            (
                f"{settings.nexudus_writes_per_minute} writes/min, "
                f"{settings.nexudus_writes_per_day} writes/day, "
                f"{settings.nexudus_calls_per_minute} calls/min"
            ),
        ),
        ("invoice metadata key", settings.invoice_metadata_key),
        ("job attempts", str(settings.job_max_attempts)),
        (
            "retention",
            (
                f"events {settings.event_retention_days} d, "
                f"failed jobs {settings.failed_job_retention_days} d"
            ),
        ),
    ]


def problems(
    settings: Settings, role: str, env: Mapping[str, str], *, dev: bool = False
) -> list[str]:
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
    found += misspelled(env)
    if role in ("serve", "all"):
        found += half_configured(settings)
    if not dev:
        found += [
            f"{name} holds a sample secret of `payhooks dev`, public in payhooks' repository: "
            "put a secret of your own in"
            for name in dev_values(env)
        ]
    return found


def _missing_for_worker(settings: Settings) -> list[str]:
    """Providers enabled without what their worker step needs to confirm a payment."""
    found = []
    for spec in PROVIDERS:
        section = settings.provider(SECTIONS[spec.name])
        missing = section.missing_for_worker()
        if missing and section.enabled:
            found.append(
                f"worker: {section.enabling_variable()} is set but {' or '.join(missing)} is "
                f"not: no {spec.display_name} payment could be confirmed"
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
    found = problems(settings, role, os.environ if env is None else env, dev=dev is not None)
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
    if found:
        # The problems and their count on stderr, after everything on stdout.
        sys.stdout.flush()
        for problem in found:
            print(wrapped(problem, lead="problem: "), file=sys.stderr)
        print(wrapped(_failed_verdict(role, found, results)), file=sys.stderr)
    else:
        print(wrapped(_verdict(role, probe=probe, results=results)))
    return exit_code


def _failed_verdict(role: str, found: list[str], results: list[ProbeResult]) -> str:
    scope = "" if role == "all" else f" for {role}"
    count = f"{len(found)} problem{'s' if len(found) > 1 else ''}"
    verdict = f"{count}: the configuration is not valid{scope}"
    if any(not (r.ok or r.skipped) for r in results):
        verdict += ", and not everything probed answered (see the probe)"
    return verdict


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
    unproven = [r.target for r in results if r.ok and not r.proven]
    if any(not (r.ok or r.skipped) for r in results):
        verdict = f"configuration is valid{scope}, but not everything answered (see the probe)"
    else:
        verdict = f"configuration is valid{scope} and everything probed answered"
    if unproven:
        verdict += f"; reachable, credentials not proven: {', '.join(unproven)}"
    if skipped:
        verdict += f"; skipped, so not checked: {', '.join(skipped)}"
    return verdict
