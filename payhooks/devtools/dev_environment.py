"""The settings `payhooks dev` and the tests run with: every provider pointed at its stand-in
(each provider's ``dev_environment(sandbox, env)``, in its ``sample.py``)."""

from __future__ import annotations

from collections.abc import Mapping

from payhooks.domain.providers import GENERIC, PROVIDERS, load
from payhooks.providers.kit.samples import DevSandbox


def dev_environment(sandbox: DevSandbox, env: Mapping[str, str]) -> dict[str, str]:
    """Every provider's dev variables, from its registry entry."""
    variables: dict[str, str] = {}
    for spec in (*PROVIDERS, GENERIC):
        variables.update(load(spec.dev_environment)(sandbox, env))
    return variables
