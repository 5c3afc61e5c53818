"""Money that went back: refunds, chargebacks and disputes lost, per payment, in Redis.

A reversal is a fact about a payment (provider, token), whatever invoice it was for, so
the reversal's job records it before anything else and without the invoice's lock. The
payment's own jobs read it under the invoice's lock, after tying the payment to the
invoice (workers/invoice_ledger.py), and the reversal's job reads that tie after recording:
whichever comes second sees the other, so a payment is never applied unseen after its
money went back.

Each reversal is kept under its own object (a refund, a dispute; the payment itself for a
chargeback), at the largest amount any of its events stated: one refund announced by
several events counts once, several partial refunds add up. A reversal without an amount,
or in another currency than the payment, takes all of it back.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal

from redis import Redis, WatchError

from payhooks.domain.events import PaymentEvent
from payhooks.storage import redis_keys
from payhooks.storage.redis_keys import text
from workers.markers import MARKER_TTL_SECONDS


@dataclass(frozen=True, slots=True)
class Reversed:
    """What went back of one payment: ``amount`` None means all of it (or unknown)."""

    amount: Decimal | None
    currency: str | None
    #: The reversals' own objects (refund, dispute) and the events that named them.
    objects: tuple[str, ...]

    def net(self, amount: Decimal, currency: str | None) -> Decimal:
        """What is left of ``amount`` once this went back: never below zero."""
        if self.amount is None or self.currency != currency:
            return Decimal(0)
        return max(amount - self.amount, Decimal(0))

    def describe(self) -> str:
        how_much = "all of it" if self.amount is None else f"{self.amount} {self.currency}"
        return f"{how_much} went back ({', '.join(self.objects)})"


class Reversals:
    def __init__(self, redis: Redis) -> None:
        self._redis = redis

    def record(self, event: PaymentEvent) -> None:
        """Keep ``event``'s reversal of its payment; its object's largest amount wins."""
        key = redis_keys.payment_reversals(event.payment_source, event.token)
        name = reversal_object(event)
        value = {
            "amount": None if event.amount is None else str(event.amount),
            "currency": event.currency,
            "event": event.key,
        }
        with self._redis.pipeline() as pipe:
            while True:
                try:
                    pipe.watch(key)  # type: ignore[no-untyped-call]
                    current = pipe.hget(key, name)
                    if current is not None and not _larger(value, json.loads(current)):
                        pipe.unwatch()
                        return
                    pipe.multi()
                    pipe.hset(key, name, json.dumps(value))
                    pipe.expire(key, MARKER_TTL_SECONDS)
                    pipe.execute()
                    return
                except WatchError:
                    continue

    def of(self, provider: str, token: str) -> Reversed | None:
        return self.of_payments([(provider, token)]).get((provider, token))

    def of_payments(self, payments: Iterable[tuple[str, str]]) -> dict[tuple[str, str], Reversed]:
        wanted = list(payments)
        if not wanted:
            return {}
        with self._redis.pipeline(transaction=False) as pipe:
            for provider, token in wanted:
                pipe.hgetall(redis_keys.payment_reversals(provider, token))
            replies: list[Mapping[bytes | str, bytes | str]] = pipe.execute()
        found = {}
        for payment, raw in zip(wanted, replies, strict=True):
            if raw:
                found[payment] = _summed({text(k): json.loads(v) for k, v in raw.items()})
        return found


def reversal_object(event: PaymentEvent) -> str:
    """What one reversal is called, so that its several events count it once: the refund
    (GoCardless names it in details), else the event's object (a Stripe refund or
    dispute, a PayPal refund); a chargeback's object is the payment itself."""
    return event.details.get("refund") or event.object_id or event.key


def _larger(new: dict[str, str | None], old: dict[str, str | None]) -> bool:
    if old.get("amount") is None:
        return False  # "all of it" already
    if new.get("amount") is None or new.get("currency") != old.get("currency"):
        return True
    return Decimal(str(new["amount"])) > Decimal(str(old["amount"]))


def _summed(objects: Mapping[str, Mapping[str, str | None]]) -> Reversed:
    currencies = {value.get("currency") for value in objects.values()}
    amounts = [value.get("amount") for value in objects.values()]
    names = tuple(sorted(objects))
    if None in amounts or len(currencies) != 1:
        return Reversed(None, None, names)
    return Reversed(sum((Decimal(str(a)) for a in amounts), Decimal(0)), currencies.pop(), names)
