"""Verified input the code could not turn into events, kept for a person.

A webhook the receiver could not normalise, or a record a reconcile scan read from the
provider's own list and could not: kept as every verified origin is (body, redacted if it
must be, and a request's signature headers), as a hash that also holds why
(``unprocessed``) and, for a listed record, that a list gave it (``read_by``), and listed
in ``payhooks:unprocessed`` by the time it was first kept. ``payhooks unprocessed list |
show | replay | dismiss`` take it from there, once the code reads it.
"""

from __future__ import annotations

from typing import Any

from payhooks.storage import trail
from payhooks.storage.trail import StoredOrigin

#: A hash's ``read_by`` for a record read from a provider's list by a reconcile scan.
READ_BY_LIST = "list"


def queue_keep(
    pipe: Any, origin: StoredOrigin, reason: str, *, ttl_seconds: int, now: float, read_by: str = ""
) -> None:
    """Queue on ``pipe`` (redis-py's, sync or asyncio) the commands that keep ``origin``."""
    fields: dict[Any, Any] = {**origin.mapping(), "unprocessed": reason}
    if read_by:
        fields["read_by"] = read_by
    # A hash beside its reason: the same body kept earlier as a string (read by the code of
    # the time) is the same record, rewritten.
    pipe.delete(origin.key)
    pipe.hset(origin.key, mapping=fields)
    pipe.expire(origin.key, ttl_seconds)
    # NX: kept again (a redelivery, the next scan's listing) it keeps its first time.
    pipe.zadd(trail.UNPROCESSED, {origin.key: now}, nx=True)
    # Their bodies have expired: off the list, so the gauge counts what is left.
    pipe.zremrangebyscore(trail.UNPROCESSED, "-inf", now - ttl_seconds)
    pipe.expire(trail.UNPROCESSED, ttl_seconds)
