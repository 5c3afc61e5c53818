"""The settings `payhooks dev` and the tests run with: every provider pointed at its stand-in
(each provider's ``dev_environment(sandbox, env)``, in its ``sample.py``)."""

from __future__ import annotations

from collections.abc import Mapping

from payhooks.providers.kit.samples import DevSandbox
from payhooks.providers.tools import TOOLS


def dev_environment(sandbox: DevSandbox, env: Mapping[str, str]) -> dict[str, str]:
    """Every provider's dev variables."""
    variables: dict[str, str] = {}
    for tools in TOOLS.values():
        variables.update(tools.dev_environment(sandbox, env))
    return variables
