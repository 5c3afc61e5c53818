"""What a provider's poller supplies to the scheduled poll (workers/polls.py): the second
front door, for a provider whose API is asked what happened instead of telling us.

A provider's ``poller.py`` implements ``Poller`` (built by its ``from_settings(settings)``)
and is listed in payhooks/providers/pollers.py with the settings section that turns its
poll on. Each page it reads is recorded once (the same dedupe, trail and job as a webhook's
events) before its cursor is committed, so a poll that dies resumes where it left off and
a page read twice queues nothing twice.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from payhooks.domain.events import Normalised
from payhooks.settings import ProviderSettings, Settings


@dataclass(frozen=True, slots=True)
class PolledPage:
    """One page of the provider's list, as its API gave it."""

    #: Each record (a payment, an event) as the API gave it: kept as its events' origin.
    records: tuple[bytes, ...]
    #: Where the next fetch starts once these records are recorded.
    cursor: str
    #: Another page follows at once (fetch again from ``cursor`` in the same run).
    more: bool


class Poller(Protocol):
    #: The provider's name: the prefix of its events' keys.
    name: str
    #: How often the scheduler runs its poll.
    interval_seconds: int

    def fetch(self, cursor: str | None) -> PolledPage:
        """The page after ``cursor`` (None: where a first poll starts). Raises the kit's
        ``ProviderLookupUnavailable`` (try again next run) or ``ProviderLookupError``."""

    def redact(self, record: bytes) -> bytes | None:
        """The record with card and bank details removed, or None when it holds none."""

    def normalise(self, record: bytes) -> list[Normalised]:
        """Turn one record into events; pure (no I/O, no clock), so `replay-event` can read
        a kept record again with the current code."""


@dataclass(frozen=True, slots=True)
class PollIntake:
    """A provider's poll, as the pollers table lists it."""

    #: Its settings section, whose ``POLL_ENABLED_BY`` field turns the poll on.
    section: type[ProviderSettings]
    build: Callable[[Settings], Poller]
