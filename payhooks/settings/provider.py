"""What every provider's settings section is: its fields, which intakes it turns on, what
it lacks.

A provider's section is a frozen dataclass of ``setting(...)`` fields in its package
(``payhooks/providers/<name>/settings.py``), listed in payhooks/providers/sections.py; ``Settings`` holds
one of each and hands it out by class (``settings.provider(StripeSettings)``).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import ClassVar, Self

from payhooks.settings.reading import Rows, read_fields, variables


class Intake(StrEnum):
    """A way a provider's events come in: its webhook (a URL of ours it calls), or a poll
    of its API (the scheduler asks it, every so often, what happened)."""

    WEBHOOK = "webhook"
    POLL = "poll"


@dataclass(frozen=True, slots=True)
class ProviderSettings(ABC):
    #: The field whose value turns its webhook on (its URL exists once it is set); None for
    #: a provider that sends no webhook.
    ENABLED_BY: ClassVar[str | None]
    #: The field whose value turns its poll on; None for a provider that is not polled.
    POLL_ENABLED_BY: ClassVar[str | None] = None
    #: The fields its worker step cannot confirm a payment without.
    WORKER_NEEDS: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Self:
        return read_fields(cls, env)

    @classmethod
    def variable(cls, field_name: str) -> str:
        return variables(cls)[field_name]

    @classmethod
    def intakes(cls) -> dict[Intake, str]:
        """Each intake it has, and the field that turns it on."""
        fields = {Intake.WEBHOOK: cls.ENABLED_BY, Intake.POLL: cls.POLL_ENABLED_BY}
        return {intake: field for intake, field in fields.items() if field is not None}

    @classmethod
    def enabling_variable(cls) -> str:
        """The variable that turns it on (its webhook's, for a provider with both)."""
        return cls.variable(next(iter(cls.intakes().values())))

    def intake_enabled(self, intake: Intake) -> bool:
        field = self.intakes().get(intake)
        return field is not None and bool(getattr(self, field))

    @property
    def enabled(self) -> bool:
        """Any of its intakes is on."""
        return any(self.intake_enabled(intake) for intake in self.intakes())

    def urls(self, name: str) -> list[str]:
        """Its URL names (``/webhooks/<name>``) when its webhook is on: one, named for it."""
        return [name] if self.intake_enabled(Intake.WEBHOOK) else []

    def missing_for_worker(self) -> list[str]:
        """The variables its worker step needs that are not set."""
        return [self.variable(name) for name in self.WORKER_NEEDS if not getattr(self, name)]

    def check(self) -> None:  # noqa: B027 (optional: most sections have nothing to check)
        """Raise ``ConfigError`` when its values contradict each other."""

    @abstractmethod
    def rows(self) -> Rows:
        """What ``check-config`` prints for it; never a secret's value."""
