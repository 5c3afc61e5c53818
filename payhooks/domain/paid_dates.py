"""Which date becomes an invoice's PaidOn: the provider's, when anyone should believe it.

Providers' dates fail in a few ways: a field that cannot be read (our normalisers then say
1970-01-01, the Unix epoch), .NET's "no date" 0001-01-01, a clock far ahead. None of them
is a day a member paid. A date is believed when it is of this century and at most a day
ahead of our clock (time zones and clock skew stay inside that); otherwise the next
candidate stands in (the time payhooks received the webhook), else the time applied.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

#: How far ahead of our clock a provider's date may be and still be believed.
MAX_AHEAD = timedelta(days=1)


def of_this_century(when: datetime) -> bool:
    return 2000 <= when.year < 2100


def believable(when: datetime | None, *, now: datetime) -> datetime | None:
    """``when`` (as UTC if it names no offset), or None when nobody should believe it."""
    if when is None:
        return None
    when = when if when.tzinfo else when.replace(tzinfo=UTC)
    if not of_this_century(when) or when > now + MAX_AHEAD:
        return None
    return when


def paid_date(*candidates: datetime | None, now: datetime) -> datetime:
    """The first believable candidate, else ``now``."""
    for when in candidates:
        believed = believable(when, now=now)
        if believed is not None:
            return believed
    return now
