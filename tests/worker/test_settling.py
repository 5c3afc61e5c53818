"""Settling an invoice (issue 17, points 5, 7, 8, 9 and 10): partial payments completed
outside payhooks, our own late PUT, PUTs that cannot be sent fresh, payments refused on the
wrong invoice, and what a double payment caught early says.

Real Redis, real RQ workers and the Nexudus sandbox over HTTP.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from redis import Redis
from rq import Queue

from payhooks.devtools.sandbox.nexudus import INVOICES, Call, Fault, SandboxState
from payhooks.providers.stripe import sample as samples
from payhooks.settings import Settings
from tests.support.delivery import deliver, replay_event, writes
from tests.support.money import (
    intent,
    job_of,
    replay,
    requeue_scheduled,
    result_of,
    succeeded,
    tokens_of,
)
from tests.support.processes import RunWorker, run_burst_worker
from tests.support.settings import with_settings
from workers.invoice_ledger import InvoiceLedger


def later(event: dict[str, Any], seconds: int) -> dict[str, Any]:
    """The same payment's event, ``seconds`` later (so its PaidOn text differs)."""
    return dict(event, created=event["created"] + seconds)


class TestPartialCompletedOutside:
    @pytest.mark.parametrize(
        "completion",
        [{"PaidAmount": 40.0}, {"TotalAmount": 60.0}],
        ids=["admin records the rest", "admin lowers the total"],
    )
    @pytest.mark.parametrize("how", ["redelivery", "replay"])
    def test_a_partial_payment_is_assessed_again_until_its_invoice_settles(
        self,
        settings: Settings,
        sandbox_state: SandboxState,
        run_worker: RunWorker,
        redis: Redis,
        queue: Queue,
        completion: dict[str, float],
        how: str,
    ) -> None:
        # 60.00 paid online; the remaining 40.00 recorded by an admin in Nexudus (or the
        # total lowered to 60.00): the payment's next event, or its replay, sets PaidOn.
        payment = intent(42, "60.00")
        first = succeeded(payment)
        deliver(settings, "stripe", first)
        run_worker()
        assert result_of(redis, first) == "partially_paid"
        sandbox_state.invoices[42].update(completion)
        if how == "redelivery":
            again = samples.event("charge.succeeded", samples.charge(payment))
            deliver(settings, "stripe", again)
        else:
            again = first
            # A finished job is not kept: a person replays the event.
            replay_event(settings, redis, f"stripe:{first['id']}")
        run_worker()
        assert result_of(redis, again) == "applied"
        assert sandbox_state.invoices[42]["PaidOn"] is not None
        assert len(tokens_of(sandbox_state, 42)) == 1

    def test_a_partial_payment_still_short_makes_no_write(
        self, settings: Settings, sandbox_state: SandboxState, run_worker: RunWorker, redis: Redis
    ) -> None:
        payment = intent(42, "60.00")
        deliver(settings, "stripe", succeeded(payment))
        run_worker()
        sandbox_state.calls.clear()
        again = samples.event("charge.succeeded", samples.charge(payment))
        deliver(settings, "stripe", again)
        run_worker()
        assert result_of(redis, again) == "partially_paid"
        assert writes(sandbox_state) == []
        assert [c.method for c in sandbox_state.calls] == ["GET"]


class TestOurOwnLatePut:
    def test_a_put_of_ours_landing_late_is_not_a_double_payment(
        self, settings: Settings, sandbox_state: SandboxState, redis: Redis, queue: Queue
    ) -> None:
        # Event 1's PUT times out here (NEXUDUS_TIMEOUT_SECONDS 1) but lands 2.5 s after it
        # was sent; event 2 of the same payment, a second later in Stripe's clock, is
        # throttled on its PUT and reads the invoice again: PaidOn is ours.
        quick = with_settings(
            settings, nexudus_timeout_seconds=1, job_retries_in_place=0, job_retry_base_seconds=60
        )
        sandbox_state.faults += [
            Fault("PUT", INVOICES, 200, delay=2.5, lands_late=True),
            Fault("PUT", INVOICES, 429, retry_after=2.0),
        ]
        payment = intent(42, "100.00")
        first = succeeded(payment)
        second = later(samples.event("charge.succeeded", samples.charge(payment)), 5)
        deliver(quick, "stripe", first, second)
        run_burst_worker(quick, redis, queue)
        assert job_of(redis, first).get_status() == "scheduled"  # the write may have landed
        assert result_of(redis, second) == "applied"
        requeue_scheduled(redis, queue)
        run_burst_worker(quick, redis, queue)
        assert result_of(redis, first) == "already_applied"
        assert len(queue.failed_job_registry) == 0
        assert sandbox_state.puts_applied[42] == 1
        assert list(InvoiceLedger(redis).applied(42)) == [f"stripe:{payment['id']}"]

    def test_paid_by_hand_while_our_put_was_throttled_is_still_flagged(
        self, settings: Settings, sandbox_state: SandboxState, run_worker: RunWorker, redis: Redis
    ) -> None:
        # Our PUT is answered 429 (so it never lands) and the invoice is marked paid by
        # hand meanwhile: PaidOn found on the fresh record is someone else's.
        sandbox_state.faults.append(Fault("PUT", INVOICES, 429, retry_after=1.5))
        sandbox_state.calls = _CallLog(
            on_throttled=lambda: sandbox_state.invoices[42].update(
                PaidOn="2026-11-30T08:00:00Z", Paid=True
            )
        )
        event = succeeded(intent(42, "100.00"))
        deliver(settings, "stripe", event)
        run_worker()
        failure = job_of(redis, event).meta["failure"]
        assert failure["error_class"] == "InvoiceAlreadyPaid"
        assert "marked paid meanwhile" in failure["reason"]
        assert sandbox_state.puts_applied[42] == 0


class _CallLog(list[Call]):
    """The sandbox's call log, running ``on_throttled`` as the first 429 is answered."""

    def __init__(self, on_throttled: Callable[[], None]) -> None:
        super().__init__()
        self._on_throttled: Callable[[], None] | None = on_throttled

    def append(self, call: Call) -> None:
        super().append(call)
        if call.status == 429 and self._on_throttled is not None:
            self._on_throttled, action = None, self._on_throttled
            action()


class TestUnsentPut:
    def test_a_put_refused_401_while_reauthenticating_names_the_role(
        self, settings: Settings, sandbox_state: SandboxState, run_worker: RunWorker, redis: Redis
    ) -> None:
        # The API user may read invoices but not edit them: every PUT is answered 401, and
        # a new bearer token takes longer than the record stays fresh.
        sandbox_state.faults += [
            Fault("PUT", INVOICES, 401, times=20),
            Fault("POST", "/api/token", 200, delay=1.2, times=20),
        ]
        event = succeeded(intent(42, "100.00"))
        deliver(settings, "stripe", event)
        run_worker()
        failure = job_of(redis, event).meta["failure"]
        assert failure["error_class"] == "NexudusPermanentError"
        assert "401" in failure["reason"]
        assert "lacks the role to edit CoworkerInvoice" in failure["reason"]
        assert sandbox_state.invoices[42]["PaidOn"] is None

    def test_a_put_that_never_gets_a_slot_in_time_says_the_write_window_is_full(
        self, settings: Settings, sandbox_state: SandboxState, redis: Redis, queue: Queue
    ) -> None:
        spaced = with_settings(
            settings, nexudus_min_interval_ms=1100, job_retries_in_place=0, job_max_attempts=1
        )
        event = succeeded(intent(42, "100.00"))
        deliver(spaced, "stripe", event)
        run_burst_worker(spaced, redis, queue)
        failure = job_of(redis, event).meta["failure"]
        assert failure["error_class"] == "PutNotSent"
        assert "for a write slot: the write window is full" in failure["reason"]
        assert sandbox_state.invoices[42]["PaidOn"] is None


class TestRefusedOnTheWrongInvoice:
    def test_a_payment_refused_on_the_wrong_invoice_applies_once_the_match_is_corrected(
        self,
        settings: Settings,
        sandbox_state: SandboxState,
        run_worker: RunWorker,
        redis: Redis,
        queue: Queue,
    ) -> None:
        # The payment names invoice number INV-777, which is invoice 60's (in pounds):
        # AmountMismatch. The operator moves the number to invoice 42 and replays.
        sandbox_state.invoices[60] = dict(
            sandbox_state.invoices[42], Id=60, InvoiceNumber="INV-777", CurrencyCode="GBP"
        )
        payment = intent(None, "100.00", metadata={"nexudus_invoice_id": "INV-777"})
        event = succeeded(payment)
        deliver(settings, "stripe", event)
        run_worker()
        assert job_of(redis, event).meta["failure"]["error_class"] == "AmountMismatch"
        sandbox_state.invoices[60]["InvoiceNumber"] = "INV-00060"
        sandbox_state.invoices[42]["InvoiceNumber"] = "INV-777"
        replay(redis, queue, job_of(redis, event))
        run_worker()
        assert result_of(redis, event) == "applied"
        assert sandbox_state.invoices[42]["PaidOn"] is not None
        assert sandbox_state.invoices[60]["PaidOn"] is None

    def test_a_payment_counted_on_one_invoice_still_may_not_name_another(
        self, settings: Settings, sandbox_state: SandboxState, run_worker: RunWorker, redis: Redis
    ) -> None:
        payment = intent(42, "50.00")
        deliver(settings, "stripe", succeeded(payment))
        run_worker()
        elsewhere = succeeded(dict(payment, metadata={"nexudus_invoice_id": "43"}))
        deliver(settings, "stripe", elsewhere)
        run_worker()
        failure = job_of(redis, elsewhere).meta["failure"]
        assert failure["error_class"] == "PaymentAlreadyApplied"
        assert tokens_of(sandbox_state, 43) == []


def test_a_double_payment_caught_before_paid_on_exists_says_what_it_is(
    settings: Settings, sandbox_state: SandboxState, run_worker: RunWorker, redis: Redis
) -> None:
    # A is counted but its PUT fails (503) and waits for RQ's retry; B pays in full.
    sandbox_state.faults.append(Fault("PUT", INVOICES, 503, times=1))
    patient = with_settings(settings, job_retries_in_place=0, job_max_attempts=1)
    a = intent(42, "100.00")
    deliver(patient, "stripe", succeeded(a))
    run_burst_worker(patient, redis, Queue(settings.queue_name, connection=redis))
    b = succeeded(intent(42, "100.00"))
    deliver(settings, "stripe", b)
    run_worker()
    reason = job_of(redis, b).meta["failure"]["reason"]
    assert "PaidOn None" not in reason
    assert f"already paid in full by {a['id']}" in reason
    assert "PaidOn not set in Nexudus yet" in reason
