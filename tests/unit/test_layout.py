"""The layout the import contracts hold: one package per provider, each in the contracts."""

from __future__ import annotations

import ast
import tomllib

from tests.support.paths import REPO

PROVIDERS_DIR = REPO / "payhooks" / "providers"


def provider_packages() -> list[str]:
    return sorted(
        path.name
        for path in PROVIDERS_DIR.iterdir()
        if (path / "__init__.py").exists() and path.name != "kit"
    )


def contract(name_starts: str) -> dict[str, object]:
    config = tomllib.loads((REPO / "pyproject.toml").read_text())
    contracts = config["tool"]["importlinter"]["contracts"]
    return next(c for c in contracts if c["name"].startswith(name_starts))


def test_every_provider_package_is_held_by_the_provider_contracts() -> None:
    expected = [f"payhooks.providers.{name}" for name in provider_packages()]
    assert sorted(contract("Inside a provider")["containers"]) == expected  # type: ignore[arg-type]
    assert sorted(contract("Providers never import each other")["modules"]) == expected  # type: ignore[arg-type]
    named = contract("The receiver and the workers name no provider")["forbidden_modules"]
    assert sorted(named) == expected  # type: ignore[arg-type]


def test_every_provider_package_says_what_it_sends_and_what_we_trust() -> None:
    for name in provider_packages():
        source = (PROVIDERS_DIR / name / "__init__.py").read_text()
        docstring = ast.get_docstring(ast.parse(source))
        assert docstring, f"payhooks/providers/{name}/__init__.py has no docstring"
        assert "Trusted" in docstring or "trusted" in docstring, name
