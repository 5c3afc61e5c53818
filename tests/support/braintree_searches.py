"""What the Braintree reconciliation tests share: the stand-in's sales, the window a scan
searches, and the notification's form content type."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from redis import Redis

from payhooks.providers.braintree.stand_in import BraintreeState, transaction_record
from payhooks.providers.kit.listing import Window
from payhooks.storage.trail import Trail

FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def last(hours: float = 1) -> Window:
    now = datetime.now(tz=UTC).replace(microsecond=0)
    return Window(now - timedelta(hours=hours), now + timedelta(seconds=5))


def sale(state: BraintreeState, sale_id: str, order_id: str, **kw: Any) -> dict[str, Any]:
    """A sale of 100.00 (unless ``amount`` says otherwise) in the stand-in's records."""
    kw.setdefault("amount", "100.00")
    record = transaction_record(sale_id, order_id=order_id, **kw)
    state.transactions[sale_id] = record
    return record


def stages(redis: Redis, event_key: str) -> list[str]:
    return [str(e["stage"]) for e in Trail(redis, ttl_seconds=60).history(event_key)]
