"""EziDebit's poll: ``GetPayments`` by settlement date over a window that overlaps the last.

Each run asks for every payment settled (or failed) from a week before the cursor's day
(or today's, whichever is earlier) to today, Australian Eastern time: five business days
and a weekend, so a bank result that reaches Ezidebit late, or a run that was missed, is
read again, and what was read before is a duplicate, never a second job. Ezidebit answers
the whole window at once: one page, and the cursor is the last day asked for.

SOAP faults and non-zero ``Error`` codes become the kit's classified failures (the run's
result, ``refused`` or ``unavailable``); the cursor stays and the next tick asks again.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime, timedelta

import httpx

from payhooks.domain.events import Normalised
from payhooks.providers.ezidebit.formats import (
    EZIDEBIT_TIME,
    NAME,
    SOAP_ACTION,
    EziDebitAnswerError,
    get_payments_request,
    normalise_row,
    parse_xml,
    payment_rows,
    record_of,
    soap_fault,
)
from payhooks.providers.ezidebit.settings import EziDebitSettings
from payhooks.providers.kit.polling import PolledPage
from payhooks.providers.kit.provider_api import TIMEOUT_SECONDS
from payhooks.providers.kit.step_errors import ProviderLookupError, ProviderLookupUnavailable
from payhooks.settings import Settings

#: How far back each poll reads: five business days and a weekend.
LOOKBACK = timedelta(days=7)
SERVICE = "Ezidebit's GetPayments"


def ezidebit_now() -> datetime:
    return datetime.now(tz=EZIDEBIT_TIME)


class EziDebitPoller:
    name = NAME

    def __init__(
        self, section: EziDebitSettings, now: Callable[[], datetime] = ezidebit_now
    ) -> None:
        self.interval_seconds = section.poll_seconds
        self._section = section
        self._now = now

    @classmethod
    def from_settings(cls, settings: Settings) -> EziDebitPoller:
        return cls(settings.provider(EziDebitSettings))

    def window(self, cursor: str | None) -> tuple[date, date]:
        """The settlement dates this run asks for."""
        today = self._now().astimezone(EZIDEBIT_TIME).date()
        start = today
        if cursor:
            try:
                start = min(start, date.fromisoformat(cursor))
            except ValueError:
                pass  # not a cursor of ours: read the usual window
        return start - LOOKBACK, today

    def fetch(self, cursor: str | None) -> PolledPage:
        return self.read(*self.window(cursor))

    def read(self, date_from: date, date_to: date) -> PolledPage:
        """Every payment settled (or failed) from ``date_from`` to ``date_to``, both
        included: Ezidebit answers the whole window at once, so one page."""
        rows = self._get_payments(date_from, date_to)
        return PolledPage(
            records=tuple(record_of(row) for row in rows),
            cursor=date_to.isoformat(),
            more=False,
        )

    def redact(self, record: bytes) -> bytes | None:
        return None  # a payment row names no card or bank account

    def normalise(self, record: bytes) -> list[Normalised]:
        return normalise_row(record, self._section.currency)

    def _get_payments(self, date_from: date, date_to: date) -> list[dict[str, str | None]]:
        key = self._section.digital_key or ""
        try:
            answer = httpx.post(
                self._section.api_url,
                content=get_payments_request(key, date_from, date_to),
                headers={"Content-Type": "text/xml; charset=utf-8", "SOAPAction": SOAP_ACTION},
                timeout=TIMEOUT_SECONDS,
            )
        except httpx.HTTPError as exc:
            raise ProviderLookupUnavailable(
                f"{SERVICE} unreachable ({exc.__class__.__name__})"
            ) from None
        status = answer.status_code
        try:
            root = parse_xml(answer.content)
        except EziDebitAnswerError as exc:
            if status >= 500 or status == 429:
                raise ProviderLookupUnavailable(f"{SERVICE} answered {status}") from None
            raise ProviderLookupError(
                f"{SERVICE} answered {status}, {exc}: check EZIDEBIT_API_URL"
            ) from None
        fault = soap_fault(root)
        if fault is not None:
            code, text = (_without(part, key) for part in fault)
            message = f"{SERVICE} answered a SOAP fault ({code[:60]}: {text[:200]})"
            # The sender's fault (a malformed call, a refused key) is not mended by asking
            # again; the server's may be.
            if code.rsplit(":", 1)[-1] in ("Client", "Sender"):
                raise ProviderLookupError(message + ": check EZIDEBIT_DIGITAL_KEY")
            raise ProviderLookupUnavailable(message)
        if status >= 500 or status == 429:
            raise ProviderLookupUnavailable(f"{SERVICE} answered {status}")
        if status != 200:
            raise ProviderLookupError(f"{SERVICE} answered {status}: check EZIDEBIT_API_URL")
        try:
            return payment_rows(root)
        except EziDebitAnswerError as exc:
            raise ProviderLookupError(_without(str(exc), key)) from None


def _without(text: str, secret: str) -> str:
    """A message of Ezidebit's, never repeating our key."""
    return text.replace(secret, "***") if secret else text
