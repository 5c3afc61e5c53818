"""EziDebit on demand: `payhooks reconcile ezidebit --since WHEN` runs the poll's own
``GetPayments`` call over the window asked for (settlement dates, Australian Eastern time),
rather than the poll's usual week: a payment settled before that week, missed while the
scheduler was down, is found the same way and queued once.

Scheduled reconciliation leaves EziDebit out: its poll already reads an overlapping window
every run.
"""

from __future__ import annotations

from payhooks.domain.events import Normalised
from payhooks.providers.ezidebit.formats import EZIDEBIT_TIME, NAME
from payhooks.providers.ezidebit.poller import EziDebitPoller
from payhooks.providers.ezidebit.settings import EziDebitSettings
from payhooks.providers.kit.listing import ListedPage, NotListed, Window
from payhooks.settings import Settings


class EziDebitLister:
    name = NAME

    def __init__(self, poller: EziDebitPoller) -> None:
        self._poller = poller

    @classmethod
    def from_settings(cls, settings: Settings) -> EziDebitLister:
        section = settings.provider(EziDebitSettings)
        if not section.digital_key:
            raise NotListed("EZIDEBIT_DIGITAL_KEY is not set (GetPayments needs it)")
        return cls(EziDebitPoller(section))

    def fetch(self, window: Window, cursor: str | None, *, thorough: bool) -> ListedPage:
        # Settlement dates, not times: the days the window touches, in Ezidebit's time zone.
        return self._poller.read(
            window.since.astimezone(EZIDEBIT_TIME).date(),
            window.until.astimezone(EZIDEBIT_TIME).date(),
        )

    def redact(self, record: bytes) -> bytes | None:
        return self._poller.redact(record)

    def normalise(self, record: bytes) -> list[Normalised]:
        return self._poller.normalise(record)
