"""What a provider's lister supplies to reconciliation (workers/reconcile.py): the provider's
own record of what happened in a window of time, read page by page, each record turned
into the same events its webhook would have given (same event ids, so the same dedupe).

A provider's ``lister.py`` implements ``Lister`` and is listed in
payhooks/providers/listers.py. Unlike a poller, a lister reads a bounded window (its
provider's list filtered by creation time), more than once: windows overlap on purpose,
and what was seen before is a duplicate, never a second job.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

import httpx

from payhooks.domain.events import Normalised, PaymentEvent
from payhooks.providers.kit.polling import PolledPage
from payhooks.providers.kit.step_errors import ProviderLookupError, ProviderLookupUnavailable
from payhooks.settings import Settings


@dataclass(frozen=True, slots=True)
class Window:
    """The creation times a scan covers, both ends included (aware datetimes, UTC)."""

    since: datetime
    until: datetime


#: One page of the provider's list, as its API gave it: a poll's page has the same parts
#: (records kept as their events' origin, the cursor after them, whether more follow).
ListedPage = PolledPage


class RateLimited(ProviderLookupUnavailable):
    """The provider answered 429: wait (its Retry-After, when it says) and ask again."""


class NotListed(Exception):
    """This provider cannot be reconciled here: the message says why (no list API, or the
    credentials its list needs are not set)."""


class Lister(Protocol):
    #: The provider's name: the prefix of its events' keys.
    name: str

    def fetch(self, window: Window, cursor: str | None, *, thorough: bool) -> ListedPage:
        """The page of ``window`` after ``cursor`` (None: its first). ``thorough`` False
        asks only for what the provider failed to deliver, where its API can say so.
        Raises ``RateLimited``, the kit's ``ProviderLookupUnavailable`` (try again later)
        or ``ProviderLookupError`` (credentials refused)."""

    def redact(self, record: bytes) -> bytes | None:
        """The record with card and bank details removed, or None when it holds none."""

    def normalise(self, record: bytes) -> list[Normalised]:
        """The record's events, exactly as its webhook's normaliser gives them; pure."""


@runtime_checkable
class ConfirmsFromList(Protocol):
    """A lister whose records are the provider's own answer about a transaction (what its
    job would read back), for events whose webhook only hints at their kind (Spreedly's
    callback says "a transaction changed"; its list says it succeeded, for how much)."""

    def confirm(self, record: bytes, event: PaymentEvent) -> PaymentEvent | None:
        """``event`` (one of ``normalise(record)``'s) as the record confirms it, or None
        when the record cannot say; pure."""


@dataclass(frozen=True, slots=True)
class Unsettled:
    """A listed record that its provider may still change: its id, and whether it is still
    open (else final: settled, voided, declined)."""

    record_id: str
    open: bool


@runtime_checkable
class RereadsUnsettled(Protocol):
    """A lister some of whose records may change what was counted after every window that
    lists them has passed (a Braintree refund: listed by when it was made, voided or
    declined days later). The scan remembers those still open (payhooks/storage/
    unsettled.py) and reads them again by id on each run until they are final, each time
    recording their events as for any listed record."""

    def unsettled(self, record: bytes) -> Unsettled | None:
        """The record's id and whether it is still open, if it is such a record; pure."""

    def reread(self, record_ids: list[str]) -> tuple[bytes, ...]:
        """The records of those ids as the provider has them now (any it no longer has
        left out). Raises as ``Lister.fetch`` does."""


@dataclass(frozen=True, slots=True)
class Pending:
    """A listed transaction not settled yet, whose later state its webhook would tell."""

    #: The provider's id for it, which ``read_back`` takes.
    transaction_id: str
    created: datetime


@runtime_checkable
class FollowsPending(Protocol):
    """A lister whose provider lists by creation time only: a transaction listed while
    pending, and settled after every scan's window has passed it, is read back by itself
    (its id kept by the scan, payhooks/storage/pending_watch.py) until it settles."""

    def pending(self, record: bytes) -> Pending | None:
        """The record's transaction, when it is still pending and one of its later states
        would be an event (a purchase that pays an invoice); else None. Pure."""

    def read_back(self, transaction_id: str) -> bytes | None:
        """The transaction as the provider holds it now, in the form its list gives it
        (for ``normalise``), or None when the provider knows no such transaction. Raises
        as ``Lister.fetch`` does."""


def list_answer(response: httpx.Response, what: str) -> dict[str, Any]:
    """The JSON object a list call answered (after ``ProviderApi`` classified 429, 5xx and
    refused credentials): another 4xx is a request the provider rejects (a person must
    look), anything else without a JSON object is a passing fault (try again later)."""
    status = response.status_code
    if 400 <= status < 500:
        raise ProviderLookupError(f"{what} rejected the request ({status})")
    try:
        answer = response.json()
    except ValueError:
        answer = None
    if status != 200 or not isinstance(answer, dict):
        raise ProviderLookupUnavailable(f"{what} answered {status} without its list")
    return answer


#: Builds a provider's lister from the settings, or raises ``NotListed``.
ListerFactory = Callable[[Settings], Lister]
