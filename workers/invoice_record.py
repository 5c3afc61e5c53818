"""The invoice's money record in Redis: per payment, its token marker and what was counted.

One small hash per invoice (``payhooks:invoice:<id>``), one field per payment, named by the
payment (``provider:token``: provider names hold no ':'), its value the payment's token
marker (workers/markers.py) and, once the payment is counted on the invoice's running total
(workers/invoice_ledger.py), the amount and currency it was counted at:
``"901:settled 100.00 EUR"``, ``"pending"``, ``" 100.00 EUR"`` (counted, marker gone).
One field rather than a marker field and an amount field: the payment's name is most of a
field's bytes, and the record is kept 400 days. A hash of at most 128 fields whose names
and values are at most 64 bytes stays in Redis's compact encoding (a listpack): about
140 B for an invoice paid once, where the release before kept 2 keys (a marker, the
ledger's hash: 296 B).

The release before kept the marker as a key of its own (``payhooks:payment-token:...``,
and before 0.2 ``payhooks:token:<invoice>:<token>``) and the ledger as a hash of JSON values
(``payhooks:invoice:<id>:applied``). They are read for a payment the record has no field
for. A payment's first write here carries them over and deletes them, in one script: once
the record holds a field for it nothing older is read in its place, so a marker "pending"
left in an old key cannot come back after the new one was forgotten, nor an old amount
after it was taken back.

Writes are made under the invoice's lock; every write only raises the record's TTL, never
lowers it, and the old ledger's alike while it holds other payments' amounts.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal

from redis import Redis

from payhooks.storage import redis_keys
from payhooks.storage.redis_keys import text


def payment_key(provider: str, token: str) -> str:
    """One payment: provider names hold no ':', so this cannot be mistaken for another."""
    return f"{provider}:{token}"


@dataclass(frozen=True, slots=True)
class PaymentEntry:
    """What the record says of one payment on one invoice."""

    #: The token marker (workers/markers.py), None if there is none.
    marker: str | None = None
    #: What the payment was counted at on the invoice, None if it is not counted.
    amount: Decimal | None = None
    currency: str | None = None

    @classmethod
    def decode(cls, value: str) -> PaymentEntry:
        marker, _, counted = value.partition(" ")
        amount, _, currency = counted.partition(" ")
        return cls(marker or None, Decimal(amount) if amount else None, currency or None)


def _counted_before(value: bytes | str) -> tuple[Decimal, str]:
    """An amount counted by the release before: JSON."""
    data = json.loads(value)
    return Decimal(data["amount"]), str(data["currency"])


# KEYS: the record, the payment's marker key and legacy marker key, the old ledger.
# ARGV: the payment, what to do ("marker", "count", "uncount"), its value, the TTL.
# The TTL is read before the write: -2, the record is new; -1, someone made it permanent.
# The old ledger still holds the invoice's other payments counted by the release before,
# which kept it 400 days from the invoice's last count: it is kept as long as the record,
# or their amounts would drop out of the running total while the invoice is still due.
_UPDATE = """
local record, payment, what, value = KEYS[1], ARGV[1], ARGV[2], ARGV[3]
local ttl = tonumber(ARGV[4])
local left = redis.call('TTL', record)
local current = redis.call('HGET', record, payment)
if not current then
    current = redis.call('GET', KEYS[2]) or redis.call('GET', KEYS[3]) or ''
    local before = redis.call('HGET', KEYS[4], payment)
    if before then
        local old = cjson.decode(before)
        current = current .. ' ' .. old['amount'] .. ' ' .. old['currency']
    end
    redis.call('DEL', KEYS[2], KEYS[3])
    redis.call('HDEL', KEYS[4], payment)
end
local marker, counted = current, ''
local space = string.find(current, ' ', 1, true)
if space then
    marker, counted = string.sub(current, 1, space - 1), string.sub(current, space + 1)
end
if what == 'marker' then
    marker = value
elseif what == 'count' then
    if counted == '' then
        counted = value
    end
elseif what == 'uncount' then
    counted = ''
end
if counted ~= '' then
    redis.call('HSET', record, payment, marker .. ' ' .. counted)
elseif marker ~= '' then
    redis.call('HSET', record, payment, marker)
else
    redis.call('HDEL', record, payment)
end
if left == -2 or (left >= 0 and left < ttl) then
    redis.call('EXPIRE', record, ttl)
end
local before_left = redis.call('TTL', KEYS[4])
if before_left >= 0 and before_left < ttl then
    redis.call('EXPIRE', KEYS[4], ttl)
end
"""


class InvoiceRecord:
    def __init__(self, redis: Redis, *, ttl_seconds: int) -> None:
        self._redis = redis
        self._ttl = ttl_seconds
        self._update = redis.register_script(_UPDATE)

    def entry(self, invoice_id: int, payment: str) -> PaymentEntry:
        provider, _, token = payment.partition(":")
        with self._redis.pipeline() as pipe:  # MULTI: the four read as of one moment
            pipe.hget(redis_keys.invoice_record(invoice_id), payment)
            pipe.get(redis_keys.token_marker(invoice_id, provider, token))
            pipe.get(redis_keys.legacy_token_marker(invoice_id, token))
            pipe.hget(redis_keys.invoice_applied(invoice_id), payment)
            kept, marker, legacy, counted = pipe.execute()
        if kept is not None:
            return PaymentEntry.decode(text(kept))
        old = marker if marker is not None else legacy
        amount, currency = _counted_before(counted) if counted is not None else (None, None)
        return PaymentEntry(None if old is None else text(old), amount, currency)

    def counted(self, invoice_id: int) -> dict[str, tuple[Decimal, str]]:
        """Every payment counted on the invoice, by ``payment_key``: amount, currency."""
        with self._redis.pipeline() as pipe:
            pipe.hgetall(redis_keys.invoice_record(invoice_id))
            pipe.hgetall(redis_keys.invoice_applied(invoice_id))
            kept: Mapping[bytes | str, bytes | str]
            before: Mapping[bytes | str, bytes | str]
            kept, before = pipe.execute()
        payments = {text(name): _counted_before(value) for name, value in before.items()}
        for name, value in kept.items():
            entry = PaymentEntry.decode(text(value))
            payments.pop(text(name), None)  # the record's word is the last
            if entry.amount is not None and entry.currency is not None:
                payments[text(name)] = (entry.amount, entry.currency)
        return payments

    def set_marker(
        self,
        invoice_id: int,
        payment: str,
        marker: str | None,
        *,
        replicas: int = 0,
        timeout_ms: int = 0,
    ) -> int:
        """The payment's token marker; None forgets it. With ``replicas``, then waits up to
        ``timeout_ms`` for that many replicas to hold it (WAIT, on the write's own
        connection) and returns how many did."""
        return self._write(invoice_id, payment, "marker", marker or "", replicas, timeout_ms)

    def count(self, invoice_id: int, payment: str, amount: Decimal, currency: str) -> None:
        """Count the payment at ``amount``, once: counted already, it keeps its amount."""
        self._write(invoice_id, payment, "count", f"{amount} {currency}")

    def uncount(self, invoice_id: int, payment: str) -> None:
        self._write(invoice_id, payment, "uncount", "")

    def _write(
        self,
        invoice_id: int,
        payment: str,
        what: str,
        value: str,
        replicas: int = 0,
        timeout_ms: int = 0,
    ) -> int:
        provider, _, token = payment.partition(":")
        keys = [
            redis_keys.invoice_record(invoice_id),
            redis_keys.token_marker(invoice_id, provider, token),
            redis_keys.legacy_token_marker(invoice_id, token),
            redis_keys.invoice_applied(invoice_id),
        ]
        if not replicas:
            self._update(keys=keys, args=[payment, what, value, self._ttl])
            return 0
        with self._redis.pipeline(transaction=False) as pipe:
            self._update(keys=keys, args=[payment, what, value, self._ttl], client=pipe)
            pipe.wait(replicas, timeout_ms)
            return int(pipe.execute()[-1])
