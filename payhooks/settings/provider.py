"""What every provider's settings section is: its fields, when it is on, what it lacks.

A provider's section is a frozen dataclass of ``setting(...)`` fields in its package
(``payhooks/providers/<name>/settings.py``), listed in payhooks/providers/sections.py; ``Settings`` holds
one of each and hands it out by class (``settings.provider(StripeSettings)``).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar, Self

from payhooks.settings.reading import Rows, read_fields, variables


@dataclass(frozen=True, slots=True)
class ProviderSettings(ABC):
    #: The field whose value turns the provider on (its URL exists once it is set).
    ENABLED_BY: ClassVar[str]
    #: The fields its worker step cannot confirm a payment without.
    WORKER_NEEDS: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Self:
        return read_fields(cls, env)

    @classmethod
    def variable(cls, field_name: str) -> str:
        return variables(cls)[field_name]

    @classmethod
    def enabling_variable(cls) -> str:
        return cls.variable(cls.ENABLED_BY)

    @property
    def enabled(self) -> bool:
        return bool(getattr(self, self.ENABLED_BY))

    def urls(self, name: str) -> list[str]:
        """Its URL names (``/webhooks/<name>``) when it is on: one, named for its provider."""
        return [name] if self.enabled else []

    def missing_for_worker(self) -> list[str]:
        """The variables its worker step needs that are not set."""
        return [self.variable(name) for name in self.WORKER_NEEDS if not getattr(self, name)]

    def check(self) -> None:  # noqa: B027 (optional: most sections have nothing to check)
        """Raise ``ConfigError`` when its values contradict each other."""

    @abstractmethod
    def rows(self) -> Rows:
        """What ``check-config`` prints for it; never a secret's value."""
