"""The invoice's money record (workers/invoice_record.py): one small hash per invoice, a
field per payment holding its token marker and what it was counted at; and the records of
the release before (a marker key per payment, legacy markers, a ledger of JSON amounts),
read while the record has nothing for a payment and carried over by its first write, so
that no older value is read, or comes back, once a newer one was written or taken back.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest
from redis import Redis

from payhooks.devtools.sandbox.nexudus import TOKENS, Fault, SandboxState, invoice_record
from payhooks.settings import Settings
from payhooks.storage import redis_keys
from tests.support.delivery import deliver, outcome_of, writes
from tests.support.money import intent, refund_created, succeeded, tokens_of
from workers.invoice_ledger import InvoiceLedger
from workers.invoice_record import InvoiceRecord
from workers.markers import COUNTED, MARKER_TTL_SECONDS, SETTLED, Markers, TokenState

DAY = 86400


def old_payment(
    redis: Redis, invoice_id: int, token: str, marker: str, amount: str | None = None
) -> None:
    """A payment as the release before kept it: its marker key, and its ledger entry if
    it was counted."""
    redis.set(redis_keys.token_marker(invoice_id, "stripe", token), marker, ex=MARKER_TTL_SECONDS)
    if amount is not None:
        redis.hset(
            redis_keys.invoice_applied(invoice_id),
            f"stripe:{token}",
            json.dumps({"amount": amount, "currency": "EUR"}),
        )
        redis.expire(redis_keys.invoice_applied(invoice_id), MARKER_TTL_SECONDS)


def old_counted_payment(
    redis: Redis, sandbox_state: SandboxState, payment: dict[str, Any], amount: str
) -> int:
    """A payment of invoice 42 the release before applied and counted: its token in
    Nexudus (the token's id returned), its marker, its ledger entry and its binding to the
    invoice."""
    token_id = next(sandbox_state.next_token_id)
    sandbox_state.tokens[token_id] = {
        "Id": token_id,
        "CoworkerInvoiceId": 42,
        "Token": payment["id"],
    }
    old_payment(redis, 42, payment["id"], f"{token_id}:counted", amount)
    redis.set(redis_keys.payment_binding("stripe", payment["id"]), "42")
    return token_id


def old_keys(redis: Redis, invoice_id: int, token: str) -> list[bool]:
    return [
        bool(redis.exists(redis_keys.token_marker(invoice_id, "stripe", token))),
        bool(redis.exists(redis_keys.legacy_token_marker(invoice_id, token))),
        bool(redis.hexists(redis_keys.invoice_applied(invoice_id), f"stripe:{token}")),
    ]


def test_a_payment_applied_is_one_compact_field_kept_400_days(
    settings: Settings, redis: Redis, sandbox_state: SandboxState, run_worker: Callable[[], None]
) -> None:
    payment = intent(42, "100.00")
    deliver(settings, "stripe", succeeded(payment))
    run_worker()
    [token] = tokens_of(sandbox_state, 42)
    record = redis_keys.invoice_record(42)
    assert redis.hgetall(record) == {
        f"stripe:{payment['id']}".encode(): f"{token['Id']}:settled 100.00 EUR".encode()
    }
    assert redis.object("encoding", record) in (b"ziplist", b"listpack")
    assert redis.ttl(record) > 399 * DAY
    assert old_keys(redis, 42, payment["id"]) == [False, False, False]
    # A new event naming the invoice, at the receiver (which writes the invoice's event
    # index, never its money record): the record keeps its 400 days.
    deliver(settings, "stripe", succeeded(intent(42, "20.00")))
    assert redis.ttl(record) > 399 * DAY
    assert redis.ttl(redis_keys.invoice_events(42)) <= settings.event_ttl_seconds


@pytest.mark.parametrize(
    ("before", "write", "after"),
    [
        (MARKER_TTL_SECONDS, 30 * DAY, MARKER_TTL_SECONDS),  # never lowered
        (10 * DAY, 30 * DAY, 30 * DAY),  # raised
        (None, 30 * DAY, None),  # made permanent by someone: left so
    ],
)
def test_a_write_only_raises_the_records_ttl(
    redis: Redis, before: int | None, write: int, after: int | None
) -> None:
    record = redis_keys.invoice_record(42)
    redis.hset(record, "stripe:pi_other", "900001:settled 100.00 EUR")
    if before is not None:
        redis.expire(record, before)
    InvoiceRecord(redis, ttl_seconds=write).set_marker(42, "stripe:pi_new", "pending")
    if after is None:
        assert redis.ttl(record) == -1
    else:
        assert after - 5 <= redis.ttl(record) <= after


def test_an_old_pending_marker_is_carried_over_then_forgotten_for_good(redis: Redis) -> None:
    # The release before sent the POST ("pending"); this one searches, posts again, and the
    # POST is refused: nothing was written, and no "pending" may come back from the old key.
    old_payment(redis, 42, "pi_old", "pending")
    markers = Markers(redis, lock_seconds=60)
    assert markers.token_state(42, "stripe", "pi_old") == TokenState(may_exist=True)
    markers.mark_pending(42, "stripe", "pi_old")
    markers.forget(42, "stripe", "pi_old")
    assert markers.token_state(42, "stripe", "pi_old") == TokenState()
    assert old_keys(redis, 42, "pi_old") == [False, False, False]
    # Forgotten without a write before: the old key goes too.
    old_payment(redis, 43, "pi_old", "pending")
    markers.forget(43, "stripe", "pi_old")
    assert markers.token_state(43, "stripe", "pi_old") == TokenState()
    assert not redis.exists(redis_keys.invoice_record(43))


def test_a_legacy_marker_is_read_then_carried_over_by_the_next_stage(redis: Redis) -> None:
    redis.set(redis_keys.legacy_token_marker(42, "pi_legacy"), "900007")
    markers = Markers(redis, lock_seconds=60)
    assert markers.token_state(42, "stripe", "pi_legacy") == TokenState(token_id=900007)
    markers.advance(42, "stripe", "pi_legacy", 900007, COUNTED)
    assert markers.token_state(42, "stripe", "pi_legacy") == TokenState(900007, stage=COUNTED)
    assert old_keys(redis, 42, "pi_legacy") == [False, False, False]


def test_an_old_count_is_kept_once_and_taken_back_for_good(redis: Redis) -> None:
    old_payment(redis, 42, "pi_old", "900001:put", "60.00")
    ledger = InvoiceLedger(redis)
    markers = Markers(redis, lock_seconds=60)
    # Counted again by this release (a retry): the amount the release before counted stays.
    ledger.record_applied(42, "stripe:pi_old", Decimal("100.00"), "EUR")
    [counted] = ledger.applied(42).values()
    assert counted.amount == Decimal("60.00")
    assert markers.token_state(42, "stripe", "pi_old") == TokenState(900001, stage="put")
    assert old_keys(redis, 42, "pi_old") == [False, False, False]
    # Taken back (the invoice was marked paid meanwhile, by someone else): gone from both.
    old_payment(redis, 43, "pi_old", "900002:counted", "60.00")
    ledger.uncount(43, "stripe:pi_old")
    markers.mark_created(43, "stripe", "pi_old", 900002)
    assert ledger.applied(43) == {}
    assert not ledger.counts(43, "stripe:pi_old")
    assert markers.token_state(43, "stripe", "pi_old") == TokenState(900002)
    assert old_keys(redis, 43, "pi_old") == [False, False, False]


def test_a_payment_counted_by_the_release_before_and_one_by_this_one_are_summed_once_each(
    settings: Settings, redis: Redis, sandbox_state: SandboxState, run_worker: Callable[[], None]
) -> None:
    # The release before counted 60.00 of invoice 42 (a partial payment, its token posted).
    first = intent(42, "60.00")
    token_id = old_counted_payment(redis, sandbox_state, first, "60.00")
    # This release counts the 40.00 that settles it.
    second = intent(42, "40.00")
    settling = succeeded(second)
    deliver(settings, "stripe", settling)
    run_worker()
    assert outcome_of(redis, f"stripe:{settling['id']}") == "applied"
    assert sandbox_state.invoices[42]["PaidOn"] is not None
    ledger = InvoiceLedger(redis)
    amounts = {name: p.amount for name, p in ledger.applied(42).items()}
    assert amounts == {
        f"stripe:{first['id']}": Decimal("60.00"),
        f"stripe:{second['id']}": Decimal("40.00"),
    }
    # The first payment's own event, redelivered: it paid the invoice too, counted once.
    sandbox_state.calls.clear()
    again = succeeded(first)
    deliver(settings, "stripe", again)
    run_worker()
    assert outcome_of(redis, f"stripe:{again['id']}") == "already_applied"
    assert writes(sandbox_state) == []
    assert sum(p.amount for p in ledger.applied(42).values()) == Decimal("100.00")
    assert Markers(redis, lock_seconds=60).token_state(42, "stripe", first["id"]) == TokenState(
        token_id, stage=SETTLED
    )
    assert old_keys(redis, 42, first["id"]) == [False, False, False]


def test_an_old_pending_marker_whose_post_landed_gets_no_second_token(
    settings: Settings, redis: Redis, sandbox_state: SandboxState, run_worker: Callable[[], None]
) -> None:
    # The release before posted the token and crashed before it read the answer.
    payment = intent(42, "100.00")
    token_id = next(sandbox_state.next_token_id)
    sandbox_state.tokens[token_id] = {
        "Id": token_id,
        "CoworkerInvoiceId": 42,
        "Token": payment["id"],
    }
    old_payment(redis, 42, payment["id"], "pending")
    paid = succeeded(payment)
    deliver(settings, "stripe", paid)
    run_worker()
    assert outcome_of(redis, f"stripe:{paid['id']}") == "applied"
    assert len(tokens_of(sandbox_state, 42)) == 1
    assert not writes(sandbox_state, "POST")
    assert old_keys(redis, 42, payment["id"]) == [False, False, False]


def test_an_old_pending_marker_whose_post_is_refused_now_leaves_no_marker(
    settings: Settings, redis: Redis, sandbox_state: SandboxState, run_worker: Callable[[], None]
) -> None:
    payment = intent(42, "100.00")
    old_payment(redis, 42, payment["id"], "pending")
    sandbox_state.faults.append(Fault("POST", TOKENS, 400))
    paid = succeeded(payment)
    deliver(settings, "stripe", paid)
    run_worker()
    assert outcome_of(redis, f"stripe:{paid['id']}") == "failed"
    state = Markers(redis, lock_seconds=60).token_state(42, "stripe", payment["id"])
    assert state == TokenState(), "nothing was written: no marker, old or new"
    assert old_keys(redis, 42, payment["id"]) == [False, False, False]


def test_reads_see_the_record_before_what_the_release_before_kept(redis: Redis) -> None:
    # Written by both (an old worker ran after this release's, against the README's advice):
    # the record's word is the last.
    old_payment(redis, 42, "pi_both", "pending", "100.00")
    redis.hset(redis_keys.invoice_record(42), "stripe:pi_both", "900001:settled 50.00 EUR")
    entry = InvoiceRecord(redis, ttl_seconds=60).entry(42, "stripe:pi_both")
    assert (entry.marker, entry.amount) == ("900001:settled", Decimal("50.00"))
    assert InvoiceLedger(redis).applied(42)["stripe:pi_both"].amount == Decimal("50.00")


def test_a_refund_of_a_payment_the_release_before_counted_comes_off_the_running_total(
    settings: Settings, redis: Redis, sandbox_state: SandboxState, run_worker: Callable[[], None]
) -> None:
    # Invoice of 200.00: the release before counted 100.00 of it, then 30.00 is refunded
    # (recorded, and read against the old ledger by this release), then this release counts
    # two more payments: 70.00 + 100.00 is still due 30.00; 30.00 more settles it.
    sandbox_state.invoices[42] = invoice_record(42, TotalAmount=200.0)
    first = intent(42, "100.00")
    old_counted_payment(redis, sandbox_state, first, "100.00")
    back = refund_created(first, "30.00")
    deliver(settings, "stripe", back)
    run_worker()
    assert outcome_of(redis, f"stripe:{back['id']}") == "no_write"
    second, third = succeeded(intent(42, "100.00")), succeeded(intent(42, "30.00"))
    deliver(settings, "stripe", second)
    run_worker()
    assert outcome_of(redis, f"stripe:{second['id']}") == "partially_paid"
    assert sandbox_state.invoices[42]["PaidOn"] is None
    deliver(settings, "stripe", third)
    run_worker()
    assert outcome_of(redis, f"stripe:{third['id']}") == "applied"
    assert sandbox_state.invoices[42]["PaidOn"] is not None
    counted = sorted((p.amount, p.reversed) for p in InvoiceLedger(redis).applied(42).values())
    assert counted == [
        (Decimal("30.00"), Decimal(0)),
        (Decimal("70.00"), Decimal("30.00")),
        (Decimal("100.00"), Decimal(0)),
    ]


def test_what_the_release_before_counted_lives_as_long_as_the_invoices_record(
    settings: Settings, redis: Redis, sandbox_state: SandboxState, run_worker: Callable[[], None]
) -> None:
    # The release before counted 60.00 of invoice 42's 100.00 long ago: its ledger has a day
    # left. The release before kept that ledger 400 days from the invoice's last count; a
    # count made here goes into the record, and must keep the 60.00 counted as long, or the
    # payment that settles the invoice finds 60.00 missing and leaves it due.
    first = intent(42, "60.00")
    old_counted_payment(redis, sandbox_state, first, "60.00")
    redis.expire(redis_keys.invoice_applied(42), DAY)
    second = succeeded(intent(42, "20.00"))
    deliver(settings, "stripe", second)
    run_worker()
    assert outcome_of(redis, f"stripe:{second['id']}") == "partially_paid"
    assert redis.ttl(redis_keys.invoice_applied(42)) > 399 * DAY
    assert redis.ttl(redis_keys.invoice_record(42)) > 399 * DAY
    assert sum(p.amount for p in InvoiceLedger(redis).applied(42).values()) == Decimal("80.00")
