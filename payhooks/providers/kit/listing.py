"""What a provider's lister supplies to reconciliation (workers/reconcile.py): the provider's
own record of what happened in a window of time, read page by page, each record turned
into the same events its webhook would have given (same event ids, so the same dedupe).

A provider's ``lister.py`` implements ``Lister`` and is listed in
payhooks/providers/listers.py. Unlike a poller, a lister reads a bounded window (its
provider's list filtered by creation time), more than once: windows overlap on purpose,
and what was seen before is a duplicate, never a second job.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
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
class Pending:
    """A listed record that its provider may still change after every window listing it
    has passed (a Braintree refund voided days later, a Spreedly purchase that succeeds
    days later): its id, whether it is still open (else final: settled, voided, declined,
    failed), and when the provider created it (what its list is ordered by)."""

    #: The provider's id for it, which ``read_back`` takes.
    record_id: str
    open: bool
    created: datetime


@runtime_checkable
class FollowsPending(Protocol):
    """A lister whose provider lists by creation time only, some of whose records may
    still change what is recorded once no window lists them again. The scan keeps the id
    of each it lists still open (payhooks/storage/pending_watch.py) and, after its window,
    reads those back by id on every run, recording them as any listed record, until they
    are final (forgotten only once their events are recorded) or too old (given up)."""

    #: The most ids kept: each costs lookups on every scan.
    most_pending: int
    #: The most ids one ``read_back`` call takes (one lookup for them all, or one each).
    read_back_batch: int

    def pending(self, record: bytes) -> Pending | None:
        """The record's id, state and creation time, when it is a record a later change of
        which would be an event (an open one is kept, a final one forgotten); else None.
        Pure; may raise ValueError for a record it cannot read."""

    def read_back(self, record_ids: Sequence[str]) -> Mapping[str, bytes]:
        """The records of those ids as the provider holds them now, by id, in the form
        its list gives them (for ``normalise``); an id the provider no longer knows is
        left out. Raises as ``Lister.fetch`` does."""


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
