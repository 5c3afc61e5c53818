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
or in another currency than the payment, takes all of it back. A refund stated both one
by one (a Stripe refund's own events) and as a running figure for its charge (Stripe's
``charge.refunded``: all refunded of the charge so far) is the same money twice: the
charge's refunds count as the larger of the two, never as their sum.

Money that came back (a dispute won, a refund that failed: PaymentKind.REINSTATED) marks
its reversal's object reinstated for good: it no longer counts, whichever order its
events arrive in. The paid events a reversal held back are remembered, so that the
reinstatement can queue them again (workers/jobs.py).

A reversal of a payment whose invoice is paid is flagged for a person once: whichever of
the reversal's job and the payment's own retry sees it first claims the flag, the other
names it; a flag is raised again only for more money gone back.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal

from redis import Redis, WatchError

from payhooks.domain.events import REFUNDED_TOTAL, REFUNDS_OF, PaymentEvent, PaymentKind
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
        """Keep ``event``'s reversal of its payment (its object's largest amount wins), or
        its reinstatement (for good: a later event of that reversal changes nothing)."""
        key = redis_keys.payment_reversals(event.payment_source, event.token)
        name = reversal_object(event)
        value: dict[str, str | None] = {
            "amount": None if event.amount is None else str(event.amount),
            "currency": event.currency,
            "event": event.key,
        }
        if event.kind is PaymentKind.REINSTATED:
            value["reinstated"] = event.key
        if REFUNDS_OF in event.details:
            value["of"] = event.details[REFUNDS_OF]
            if event.details.get(REFUNDED_TOTAL) == "true":
                value["total"] = "true"
        with self._redis.pipeline() as pipe:
            while True:
                try:
                    pipe.watch(key)  # type: ignore[no-untyped-call]
                    current = pipe.hget(key, name)
                    if current is not None and not _replaces(value, json.loads(current)):
                        pipe.unwatch()
                        return
                    pipe.multi()
                    pipe.hset(key, name, json.dumps(value))
                    pipe.expire(key, MARKER_TTL_SECONDS)
                    pipe.execute()
                    return
                except WatchError:
                    continue

    def hold(self, provider: str, token: str, event: PaymentEvent) -> None:
        """Remember a paid event of the payment that its reversals held back, and the event
        itself, where a job queued again reads it (its own job, which holds it, is deleted
        as it finishes)."""
        key = redis_keys.payment_held_events(provider, token)
        with self._redis.pipeline() as pipe:
            pipe.sadd(key, event.key)
            pipe.expire(key, MARKER_TTL_SECONDS)
            pipe.set(redis_keys.event(event.key), event.to_json(), ex=MARKER_TTL_SECONDS)
            pipe.execute()

    def held(self, provider: str, token: str) -> list[str]:
        members = self._redis.smembers(redis_keys.payment_held_events(provider, token))
        return sorted(text(m) for m in members)

    def release(self, provider: str, token: str, event_key: str) -> None:
        self._redis.srem(redis_keys.payment_held_events(provider, token), event_key)

    def claim_flag(self, provider: str, token: str, event_key: str, undone: Reversed) -> str | None:
        """Claim the flag for this reversal of a paid payment: None if ``event_key`` is
        to raise it, else the event that raised it already. Called under the invoice lock.
        The same event (a retry, a replay) raises it again; another event only for more
        money gone back than was flagged."""
        key = redis_keys.payment_reversal_flag(provider, token)
        raw = self._redis.get(key)
        amount = None if undone.amount is None else str(undone.amount)
        if raw is not None:
            flagged = json.loads(raw)
            grown = flagged["amount"] is not None and (
                amount is None or Decimal(amount) > Decimal(flagged["amount"])
            )
            if flagged["event"] != event_key and not grown:
                return str(flagged["event"])
        self._redis.set(
            key, json.dumps({"event": event_key, "amount": amount}), ex=MARKER_TTL_SECONDS
        )
        return None

    def flagged_by(self, provider: str, token: str) -> str | None:
        raw = self._redis.get(redis_keys.payment_reversal_flag(provider, token))
        return None if raw is None else str(json.loads(raw)["event"])

    def recorded_objects(self, provider: str, token: str) -> set[str]:
        """The reversals recorded for the payment, by object, counting or not (reinstated)."""
        return {text(k) for k in self._redis.hkeys(redis_keys.payment_reversals(provider, token))}

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
            summed = _summed({text(k): json.loads(v) for k, v in raw.items()}) if raw else None
            if summed is not None:
                found[payment] = summed
        return found


def reversal_object(event: PaymentEvent) -> str:
    """What one reversal is called, so that its several events count it once: the refund
    (GoCardless names it in details) or the dispute (Braintree's event object is the
    transaction, which two disputes can share, and a dispute won undoes only itself), else
    the event's object (a Stripe refund or dispute, a PayPal refund); a chargeback's object
    is the payment itself."""
    return (
        event.details.get("refund") or event.details.get("dispute") or event.object_id or event.key
    )


def _replaces(new: Mapping[str, str | None], old: Mapping[str, str | None]) -> bool:
    """Whether ``new`` is to replace what is kept for the same reversal."""
    if old.get("reinstated"):
        return False  # the money came back: nothing of this reversal counts again
    if new.get("reinstated"):
        return True
    if old.get("amount") is None:
        return False  # "all of it" already
    if new.get("amount") is None or new.get("currency") != old.get("currency"):
        return True
    return Decimal(str(new["amount"])) > Decimal(str(old["amount"]))


def _summed(objects: Mapping[str, Mapping[str, str | None]]) -> Reversed | None:
    """What the reversals kept add up to; None once none of them counts any more.

    Reversals of their own (a dispute, a chargeback) add up. The refunds of one charge
    are stated one by one and, by some events, as the charge's running total: they count
    as the larger of that total and the sum of those stated one by one. A refund that
    failed counts in neither: it is taken off the running total, which Stripe does not
    state again when a refund fails.
    """
    counting = {name: value for name, value in objects.items() if not value.get("reinstated")}
    if not counting:
        return None
    names = tuple(sorted(counting))
    currencies = {value.get("currency") for value in counting.values()}
    if any(v.get("amount") is None for v in counting.values()) or len(currencies) != 1:
        return Reversed(None, None, names)
    alone = Decimal(0)
    totals: dict[str, Decimal] = {}
    parts: dict[str, Decimal] = {}
    for value in counting.values():
        amount = Decimal(str(value["amount"]))
        charge = value.get("of")
        if charge is None:
            alone += amount
        elif value.get("total"):
            totals[charge] = max(totals.get(charge, Decimal(0)), amount)
        else:
            parts[charge] = parts.get(charge, Decimal(0)) + amount
    failed: dict[str, Decimal] = {}
    for value in objects.values():
        charge = value.get("of")
        if value.get("reinstated") and charge is not None and value.get("amount") is not None:
            failed[charge] = failed.get(charge, Decimal(0)) + Decimal(str(value["amount"]))
    refunds = sum(
        (
            max(totals.get(c, Decimal(0)) - failed.get(c, Decimal(0)), parts.get(c, Decimal(0)))
            for c in {*totals, *parts}
        ),
        Decimal(0),
    )
    if alone + refunds <= 0:
        return None
    return Reversed(alone + refunds, currencies.pop(), names)
