"""Each provider's poller, by its name: where the scheduler and the workers find them.

A poller asks a provider's API what happened, for a provider that sends no webhook (or to
catch what its webhooks missed); its events go through the same record-once hand-off as a
webhook's. EziDebit, which sends no webhook, is polled. A provider's poll runs once its
section's ``POLL_ENABLED_BY`` field is set.
"""

from __future__ import annotations

from collections.abc import Mapping

from payhooks.providers.ezidebit.poller import EziDebitPoller
from payhooks.providers.ezidebit.settings import EziDebitSettings
from payhooks.providers.kit.polling import Poller, PollIntake
from payhooks.settings import Intake, Settings

__all__ = ["POLLERS", "build_pollers"]

POLLERS: Mapping[str, PollIntake] = {
    "ezidebit": PollIntake(EziDebitSettings, EziDebitPoller.from_settings),
}


def build_pollers(
    settings: Settings, table: Mapping[str, PollIntake] = POLLERS
) -> dict[str, Poller]:
    """The pollers of the providers whose poll the settings turn on, by provider name."""
    return {
        name: intake.build(settings)
        for name, intake in table.items()
        if settings.provider(intake.section).intake_enabled(Intake.POLL)
    }
