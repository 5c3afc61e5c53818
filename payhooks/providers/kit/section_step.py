"""The shape of a step that needs only its provider's settings section (API confirmations)."""

from __future__ import annotations

from typing import ClassVar, Generic, Self, TypeVar, cast

from redis import Redis

from payhooks.settings import ProviderSettings, Settings
from payhooks.storage.trail import Trail

S = TypeVar("S", bound=ProviderSettings)


class SectionStep(Generic[S]):
    """Built with ``from_settings`` (payhooks/providers/worker_steps.py); reads
    ``self._settings`` (its section)."""

    SECTION: ClassVar[type[ProviderSettings]]

    def __init__(self, section: S) -> None:
        self._settings = section

    @classmethod
    def from_settings(cls, settings: Settings, redis: Redis, trail: Trail) -> Self:
        return cls(cast(S, settings.provider(cls.SECTION)))
