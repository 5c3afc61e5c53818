"""The settings `payhooks dev` and the tests run with: every provider pointed at its stand-in."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from payhooks.domain.providers import GENERIC, PROVIDERS, load


@dataclass(frozen=True, slots=True)
class DevSandbox:
    """Where `payhooks dev` and the tests run the providers' stand-ins.

    Each provider's sample module has a ``dev_environment(sandbox, env)`` (named in its
    registry entry): the variables that point the provider at its stand-in and sign with
    the dev secrets. A secret the user exported in ``env`` wins, so `payhooks dev` can try
    a real provider's signatures; where the worker calls an API, the stand-in always does.
    """

    url: str
    #: A directory for files a setting names (PayPal's trusted CA).
    data_dir: str
    #: The stand-ins' states the caller keeps, by stand-in name (``paypal``).
    states: Mapping[str, object] = field(default_factory=dict)


def exported_or(env: Mapping[str, str], variable: str, dev_value: str) -> str:
    """The user's value for ``variable``, or the dev one."""
    return env.get(variable) or dev_value


def dev_environment(sandbox: DevSandbox, env: Mapping[str, str]) -> dict[str, str]:
    """Every provider's dev variables, from its registry entry."""
    variables: dict[str, str] = {}
    for spec in (*PROVIDERS, GENERIC):
        variables.update(load(spec.dev_environment)(sandbox, env))
    return variables
