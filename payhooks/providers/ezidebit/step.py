"""A dishonour of a payment payhooks saw settle is its reversal, never a failure alone.

Ezidebit reports a payment's latest status: a row read settled (S) one day may read
dishonoured (D, F) or come back as a "late return" later. Applied as a failure it would
change nothing, and the invoice would stay paid by money the bank took back; so when the
same PaymentID was polled settled before (its paid event is stored, or it was applied to an
invoice), the dishonour is a reversal of it (PaymentKind.REFUNDED, all of it): the money
path records it and flags a paid invoice for a person (PaymentReversed); it never unpays
an invoice by itself. A dishonour of a payment never seen settled stays a failure, with
the bank's reason. A late return whose payment payhooks never saw settle is for a person.
"""

from __future__ import annotations

from redis import Redis

from payhooks.domain.events import PaymentEvent, PaymentKind
from payhooks.providers.ezidebit.formats import LATE, NAME, PAID
from payhooks.providers.kit.step_errors import ProviderLookupError
from payhooks.settings import Settings
from payhooks.storage import redis_keys
from payhooks.storage.record_once import Seen, seen_before
from payhooks.storage.trail import Trail


class LateReturnUnmatched(ProviderLookupError):
    """A late return names a payment payhooks never saw settle: a person finds it."""


class EziDebitStep:
    def __init__(self, redis: Redis) -> None:
        self._redis = redis

    @classmethod
    def from_settings(cls, settings: Settings, redis: Redis, trail: Trail) -> EziDebitStep:
        return cls(redis)

    def seen_paid(self, payment_id: str) -> bool:
        paid_event = f"{NAME}:{payment_id}-{PAID}"
        if self._redis.exists(redis_keys.payment_binding(NAME, payment_id)):
            return True
        # A trail that cannot be read may have said settled: a reversal then, the safe
        # reading (it counts less, and flags a paid invoice for a person), never a bare
        # failure that would leave an invoice paid by money the bank took back.
        [seen] = seen_before(self._redis, [paid_event])
        return seen is not Seen.NO

    def __call__(self, event: PaymentEvent) -> PaymentEvent:
        if event.kind is not PaymentKind.FAILED:
            return event
        if self.seen_paid(event.token):
            # All of it went back: a dishonour returns the whole debit.
            return event.with_changes(kind=PaymentKind.REFUNDED, amount=None)
        if event.details.get(LATE) == "true":
            raise LateReturnUnmatched(
                f"Ezidebit late return of {event.amount} {event.currency} (PaymentID "
                f"{event.token}, {event.invoice.describe()}): payhooks never saw that payment "
                "settle; find the payment it returns and check its invoice"
            )
        return event  # a failure: nothing is written; the bank's reason is in its details
