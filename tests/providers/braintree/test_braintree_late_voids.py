"""A Braintree refund voided or declined after every window that lists it has passed: the
scan searches refunds by when they were made, so only the refunds it kept as not yet
final (payhooks/storage/pending_watch.py, as Spreedly's pending purchases), read back by id
on each run, can tell it.
Each test scans a window 5 days after the refund's, through the stand-in's search, and a
real RQ worker applies what it queued to the Nexudus sandbox.

Fixtures: refunds as in test_braintree_refunds.py (braintree-python's integration tests);
a refund still open is voided as Braintree's "Transaction: Void" allows (authorized,
submitted for settlement, or, for PayPal, settlement pending: the stand-in's
``void_transaction``), and settles as its settlement batch leaves it (``settled``).
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from redis import Redis

from payhooks.cli.reconcile import reconcile_providers
from payhooks.devtools.sandbox.nexudus import SandboxState
from payhooks.providers.braintree.lister import BraintreeLister
from payhooks.providers.braintree.stand_in import (
    BraintreeState,
    RefundRefused,
    refund_record,
    settle_transaction,
    void_transaction,
)
from payhooks.providers.kit.listing import Window
from payhooks.settings import Settings
from payhooks.storage import redis_keys
from payhooks.storage.jobs import JobFactory
from payhooks.storage.pending_watch import PendingWatch
from payhooks.storage.record_once import RecordOnce
from payhooks.storage.task_lease import TaskLease
from payhooks.storage.trail import Trail
from payhooks.storage.worker_metrics import RECONCILED_EVENTS, WorkerMetrics
from tests.support.braintree_searches import last, sale, stages
from tests.support.delivery import deliver
from tests.support.processes import RunWorker
from tests.support.provider_payloads import braintree_paid
from workers.reconcile import ScanCounts, reconcile_task, scheduled_scan

PAID = "braintree:transaction-bt_late-paid"
REINSTATED = "braintree:transaction-bt_late_back-reinstated"


def days_on(days: int) -> Window:
    """An hour's window ``days`` from now: it lists none of today's transactions."""
    at = datetime.now(tz=UTC).replace(microsecond=0) + timedelta(days=days)
    return Window(at - timedelta(hours=1), at + timedelta(seconds=5))


def remembered(redis: Redis) -> list[str]:
    return sorted(
        redis_keys.text(m) for m in redis.zrange(redis_keys.reconcile_pending("braintree"), 0, -1)
    )


def a_paypal_refund(braintree_state: BraintreeState) -> dict[str, Any]:
    """A PayPal sale refunded in full, its refund settlement pending (PayPal's may stay
    so for days, and may be voided meanwhile)."""
    sale(braintree_state, "bt_late", "42", payment_instrument_type="paypal_account")
    return refund_record(braintree_state, "bt_late_back", "bt_late", status="settlement_pending")


def scheduled(settings: Settings, redis: Redis, lister: BraintreeLister, at: float) -> ScanCounts:
    """One run of the scheduled thorough scan over the last hour, its clock at ``at``."""
    lease = TaskLease(
        redis, reconcile_task("braintree", thorough=True), seconds=10, cursor_ttl_seconds=60
    )
    assert lease.acquire()
    try:
        return scheduled_scan(
            lister,
            lease,
            redis,
            RecordOnce(JobFactory(settings), event_ttl_seconds=settings.event_ttl_seconds),
            WorkerMetrics(redis),
            thorough=True,
            seconds=3600,
            pending_days=settings.reconcile_pending_days,
            now=lambda: at,
        )
    finally:
        lease.release()


def tokens_of(sandbox_state: SandboxState, invoice_id: int) -> list[dict[str, Any]]:
    return [t for t in sandbox_state.tokens.values() if t["CoworkerInvoiceId"] == invoice_id]


def test_a_refund_voided_days_after_its_window_reinstates_the_payment_it_held(
    settings: Settings,
    redis: Redis,
    sandbox_state: SandboxState,
    braintree_state: BraintreeState,
    run_worker: RunWorker,
) -> None:
    a_paypal_refund(braintree_state)
    [row] = reconcile_providers(settings, redis, last(), ["braintree"])
    assert (row["queued"], row["result"]) == (2, "ok")
    run_worker()
    assert stages(redis, PAID)[-1] == "reversed"  # held: all of it went back
    assert sandbox_state.invoices[42]["PaidOn"] is None

    void_transaction(braintree_state, "bt_late_back", at=days_on(5).since)
    [row] = reconcile_providers(settings, redis, days_on(5), ["braintree"])

    assert (row["scanned"], row["queued"], row["seen"], row["result"]) == (1, 1, 0, "ok")
    run_worker()
    assert stages(redis, REINSTATED)[:2] == ["polled", "enqueued"]
    assert stages(redis, REINSTATED)[-1] == "no_write"
    assert stages(redis, PAID)[-1] == "applied"
    assert sandbox_state.invoices[42]["PaidOn"] is not None
    assert len(tokens_of(sandbox_state, 42)) == 1
    # Final: forgotten, and a later scan reads nothing again.
    assert remembered(redis) == []
    [row] = reconcile_providers(settings, redis, days_on(6), ["braintree"])
    assert (row["scanned"], row["queued"]) == (0, 0)


def test_a_late_void_of_a_refund_flagged_on_a_paid_invoice_explains_the_flag(
    settings: Settings,
    redis: Redis,
    sandbox_state: SandboxState,
    braintree_state: BraintreeState,
    run_worker: RunWorker,
) -> None:
    sale(braintree_state, "bt_late", "43", payment_instrument_type="paypal_account")
    deliver(settings, "braintree", braintree_paid(order_id="43", transaction_id="bt_late"))
    run_worker()
    paid_on = sandbox_state.invoices[43]["PaidOn"]
    assert paid_on is not None
    refund_record(braintree_state, "bt_late_back", "bt_late", status="settlement_pending")
    reconcile_providers(settings, redis, last(), ["braintree"])
    run_worker()
    refund = "braintree:transaction-bt_late_back-refunded"
    assert stages(redis, refund)[-1] == "failed"  # PaymentReversed, for a person

    void_transaction(braintree_state, "bt_late_back", at=days_on(5).since)
    [row] = reconcile_providers(settings, redis, days_on(5), ["braintree"])
    assert row["queued"] == 1
    run_worker()

    [reinstated] = [
        e
        for e in Trail(redis, ttl_seconds=60).history(REINSTATED)
        if e["stage"] == "no_write"  # its note names the flag it made moot
    ]
    assert f"the PaymentReversed failure of {refund} is moot: purge it" in reinstated["note"]
    assert sandbox_state.invoices[43]["PaidOn"] == paid_on  # never written again
    assert len(tokens_of(sandbox_state, 43)) == 1
    assert remembered(redis) == []


def test_a_refund_that_settles_is_forgotten_and_still_counts(
    settings: Settings,
    redis: Redis,
    sandbox_state: SandboxState,
    braintree_state: BraintreeState,
    run_worker: RunWorker,
) -> None:
    a_paypal_refund(braintree_state)
    reconcile_providers(settings, redis, last(), ["braintree"])
    run_worker()
    assert remembered(redis) == ["bt_late_back"]
    # Still pending a day on: read again, kept, nothing queued.
    [row] = reconcile_providers(settings, redis, days_on(1), ["braintree"])
    assert (row["scanned"], row["seen"], row["queued"]) == (1, 1, 0)
    assert remembered(redis) == ["bt_late_back"]

    settle_transaction(braintree_state, "bt_late_back", at=days_on(2).since)
    [row] = reconcile_providers(settings, redis, days_on(2), ["braintree"])

    assert (row["scanned"], row["seen"], row["queued"]) == (1, 1, 0)
    assert remembered(redis) == []
    with pytest.raises(RefundRefused, match="91504"):  # settled: past voiding
        void_transaction(braintree_state, "bt_late_back")
    run_worker()
    assert stages(redis, PAID)[-1] == "reversed"
    assert sandbox_state.invoices[42]["PaidOn"] is None


def test_a_refund_still_open_after_the_pending_days_is_given_up_out_loud(
    settings: Settings,
    redis: Redis,
    braintree_state: BraintreeState,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # A void after this would reinstate a payment nobody applies: a person must look.
    a_paypal_refund(braintree_state)
    reconcile_providers(settings, redis, last(), ["braintree"])
    assert remembered(redis) == ["bt_late_back"]
    searches = len(braintree_state.requests)

    later = time.time() + settings.reconcile_pending_days * 86400 + 60
    with caplog.at_level(logging.WARNING, logger="payhooks.reconcile"):
        done = scheduled(settings, redis, BraintreeLister.from_settings(settings), later)

    # Read back once more (still open), then given up.
    assert (done.given_up, done.read_back) == (1, 1)
    assert remembered(redis) == []
    [told] = [r for r in caplog.records if r.getMessage() == "reconcile.pending_given_up"]
    assert told.transactions == ["bt_late_back"]  # type: ignore[attr-defined]
    assert redis.hget(RECONCILED_EVENTS, "braintree|given_up") == b"1"  # alerted on
    # The window (a month on) lists nothing: its one record fetched is the read-back's.
    assert braintree_state.requests[searches:] == ["advanced_search_ids"] * 4 + [
        "advanced_search 1"
    ]


def test_refunds_over_the_cap_are_given_up_oldest_first_out_loud(
    settings: Settings,
    redis: Redis,
    braintree_state: BraintreeState,
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = datetime.now(tz=UTC).replace(microsecond=0)
    for n, made in ((1, now - timedelta(minutes=10)), (2, now - timedelta(minutes=5))):
        sale(braintree_state, f"bt_s{n}", f"4{n}", payment_instrument_type="paypal_account")
        refund_record(braintree_state, f"bt_r{n}", f"bt_s{n}", status="settlement_pending", at=made)
    lister = BraintreeLister.from_settings(settings)
    lister.most_pending = 1

    with caplog.at_level(logging.WARNING, logger="payhooks.reconcile"):
        done = scheduled(settings, redis, lister, time.time())

    assert (done.queued, done.given_up) == (4, 1)  # two sales, two refunds; one dropped
    assert remembered(redis) == ["bt_r2"]
    [told] = [r for r in caplog.records if r.getMessage() == "reconcile.pending_dropped"]
    assert told.transactions == ["bt_r1"]  # type: ignore[attr-defined]
    assert redis.hget(RECONCILED_EVENTS, "braintree|given_up") == b"1"  # alerted on


def test_what_is_remembered_is_bounded_oldest_first_and_by_age(redis: Redis) -> None:
    kept = PendingWatch(redis, "braintree", max_age_seconds=3600, cap=3)
    now = time.time()
    dropped = []
    for n in range(5):  # made a second apart, r0 first
        dropped += kept.remember([(f"r{n}", now - 100 + n)], now=now)
    assert dropped == ["r0", "r1"]
    assert kept.watched() == ["r2", "r3", "r4"]
    kept.forget(["r3"])  # final
    assert kept.remember([("r2", now - 98), ("r5", now - 95)], now=now) == []
    assert kept.watched() == ["r2", "r4", "r5"]  # r2 kept its place
    assert 0 < redis.ttl(redis_keys.reconcile_pending("braintree")) <= 2 * 3600
    # Past the age, an id is due no more but given up (the caller counts it).
    redis.zadd(redis_keys.reconcile_pending("braintree"), {"r2": now - 7200})
    assert kept.due(now=now) == (["r4", "r5"], ["r2"])
