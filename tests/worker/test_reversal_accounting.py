"""Reversals counted right (issue 17, second review): one refund stated twice counts once,
a reversal of a paid invoice is flagged once, and money that came back (a dispute won, a
refund that failed) stops counting and lets its payment apply.

Real Redis, real RQ workers, the Nexudus sandbox and the providers' stand-ins over HTTP.
"""

from __future__ import annotations

import base64
import json
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qs

import pytest
from redis import Redis
from rq import Queue
from rq.registry import FailedJobRegistry

from payhooks.devtools.sandbox.nexudus import INVOICES, Fault, SandboxState
from payhooks.providers.braintree import sample as braintree_samples
from payhooks.providers.gocardless import sample as gocardless_samples
from payhooks.providers.gocardless.stand_in import GoCardlessState
from payhooks.settings import Settings
from payhooks.storage import redis_keys
from payhooks.storage.trail import Trail
from tests.support.delivery import deliver, writes
from tests.support.money import (
    dispute,
    intent,
    job_of,
    refund_created,
    refunded,
    replay,
    requeue_scheduled,
    result_of,
    succeeded,
    tokens_of,
    wait_for,
)
from tests.support.processes import RunWorker, run_burst_worker
from tests.support.provider_payloads import (
    add_payment,
    add_refund,
    braintree_paid,
    braintree_sdk_sample,
)
from tests.support.settings import BRAINTREE_PRIVATE, BRAINTREE_PUBLIC, with_settings
from workers.invoice_ledger import InvoiceLedger


def refund(
    payment: dict[str, Any],
    refund_id: str,
    amount: str,
    event_type: str = "refund.created",
    status: str = "succeeded",
) -> dict[str, Any]:
    """A refund's own event (``refund.created``, ``refund.updated``, ``refund.failed``,
    ``charge.refund.updated``) for one refund of the payment's charge."""
    event = refund_created(payment, amount)
    event["type"] = event_type
    event["data"]["object"].update(id=refund_id, status=status)
    return event


def refunded_so_far(payment: dict[str, Any], amount: str) -> dict[str, Any]:
    """``charge.refunded`` stating all that was refunded of the charge so far."""
    return refunded(payment, amount)


def counted(redis: Redis, invoice_id: int = 42) -> tuple[Decimal, Decimal]:
    """What the payment counted on the invoice still brings, and what of it went back."""
    [payment] = InvoiceLedger(redis).applied(invoice_id).values()
    return payment.amount, payment.reversed


# -- a: one refund stated twice ------------------------------------------------------------


class TestOneRefundStatedTwice:
    def test_charge_refunded_and_refund_created_of_one_partial_refund_count_once(
        self, settings: Settings, sandbox_state: SandboxState, run_worker: RunWorker, redis: Redis
    ) -> None:
        # Both subscribed: one refund of 20.00 arrives as charge.refunded (amount_refunded,
        # the charge's total) and as refund.created (the refund's own amount).
        payment = intent(42, "50.00")
        deliver(settings, "stripe", succeeded(payment))
        run_worker()
        deliver(
            settings,
            "stripe",
            refunded_so_far(payment, "20.00"),
            refund(payment, "re_A", "20.00"),
            refund(payment, "re_A", "20.00", "charge.refund.updated"),
        )
        run_worker()
        assert counted(redis) == (Decimal("30.00"), Decimal("20.00"))

    @pytest.mark.parametrize("order", ["totals first", "refunds first"])
    def test_several_partial_refunds_and_a_dispute_add_up_right(
        self,
        settings: Settings,
        sandbox_state: SandboxState,
        run_worker: RunWorker,
        redis: Redis,
        order: str,
    ) -> None:
        # Two refunds (20.00 then 10.00, the charge's total going 20.00 -> 30.00) and a
        # dispute lost of 5.00: 35.00 went back, in whichever order the events come.
        payment = intent(42, "50.00")
        deliver(settings, "stripe", succeeded(payment))
        run_worker()
        totals = [refunded_so_far(payment, "20.00"), refunded_so_far(payment, "30.00")]
        ones = [refund(payment, "re_A", "20.00"), refund(payment, "re_B", "10.00")]
        lost = dispute(payment, "charge.dispute.closed", "lost", "5.00")
        deliver(settings, "stripe", *(totals + ones if order == "totals first" else ones + totals))
        deliver(settings, "stripe", lost)
        run_worker()
        assert counted(redis) == (Decimal("15.00"), Decimal("35.00"))

    def test_a_refund_stated_twice_before_its_payment_leaves_the_rest_counted(
        self, settings: Settings, sandbox_state: SandboxState, run_worker: RunWorker, redis: Redis
    ) -> None:
        payment = intent(42, "100.00")
        deliver(
            settings, "stripe", refund(payment, "re_A", "30.00"), refunded_so_far(payment, "30.00")
        )
        run_worker()
        event = succeeded(payment)
        deliver(settings, "stripe", event)
        run_worker()
        assert result_of(redis, event) == "partially_paid"
        [token] = tokens_of(sandbox_state, 42)
        assert "running total 70.00 of 100.00 EUR, 30.00 still due" in token["Notes"]


# -- b: one flag per reversal of a paid invoice -------------------------------------------


def test_a_refund_after_our_late_put_landed_is_flagged_once(
    settings: Settings,
    sandbox_state: SandboxState,
    run_worker: RunWorker,
    redis: Redis,
    queue: Queue,
) -> None:
    # The payment's PUT times out here and lands later; the refund's job then finds
    # PaidOn (flagged), and the payment's retry finds it too: one flag, not two.
    quick = with_settings(
        settings, nexudus_timeout_seconds=1, job_retries_in_place=0, job_retry_base_seconds=60
    )
    sandbox_state.faults.append(Fault("PUT", INVOICES, 200, delay=2.0, lands_late=True))
    payment = intent(42, "100.00")
    event = succeeded(payment)
    deliver(quick, "stripe", event)
    run_burst_worker(quick, redis, queue)
    wait_for(lambda: sandbox_state.puts_applied[42] == 1, 10, "the late PUT")
    back = refunded(payment)
    deliver(settings, "stripe", back)
    run_worker()
    assert job_of(redis, back).meta["failure"]["error_class"] == "PaymentReversed"
    requeue_scheduled(redis, queue)
    run_worker()
    assert result_of(redis, event) == "reversed"
    # The job's result is only its outcome's name; the note is in the trail.
    assert f"already flagged for a person by stripe:{back['id']}" in last_note(redis, event)
    assert len(FailedJobRegistry(queue=queue)) == 1
    # A replay of the flagged job is the same flag, raised again.
    replay(redis, queue, job_of(redis, back))
    run_worker()
    assert job_of(redis, back).meta["failure"]["error_class"] == "PaymentReversed"
    # More money gone back later is a new flag.
    deliver(settings, "stripe", dispute(payment, "charge.dispute.created", "needs_response", "1"))
    run_worker()
    assert len(FailedJobRegistry(queue=queue)) == 2


# -- c: money that came back ---------------------------------------------------------------


WON = {
    "stripe funds_reinstated": ("charge.dispute.funds_reinstated", "won"),
    "stripe dispute closed won": ("charge.dispute.closed", "won"),
}


class TestMoneyThatCameBack:
    @pytest.mark.parametrize("won", WON.values(), ids=WON.keys())
    def test_a_payment_stopped_by_a_dispute_later_won_is_applied(
        self,
        settings: Settings,
        sandbox_state: SandboxState,
        run_worker: RunWorker,
        redis: Redis,
        won: tuple[str, str],
    ) -> None:
        payment = intent(42, "100.00")
        deliver(
            settings,
            "stripe",
            dispute(payment, "charge.dispute.created", "needs_response", "100.00"),
        )
        run_worker()
        event = succeeded(payment)
        deliver(settings, "stripe", event)
        run_worker()
        assert result_of(redis, event) == "reversed"
        assert sandbox_state.invoices[42]["PaidOn"] is None
        back = dispute(payment, won[0], won[1], "100.00")
        deliver(settings, "stripe", back)
        run_worker()  # the reinstatement queues the held payment again, which applies
        assert result_of(redis, back) == "no_write"
        assert result_of(redis, event) == "applied"
        assert sandbox_state.invoices[42]["PaidOn"] is not None
        assert [t["Token"] for t in tokens_of(sandbox_state, 42)] == [payment["id"]]
        # A late redelivery of the dispute's first events changes nothing now.
        deliver(
            settings,
            "stripe",
            dispute(payment, "charge.dispute.funds_withdrawn", "needs_response", "100.00"),
        )
        run_worker()
        assert InvoiceLedger(redis).reversals.of("stripe", payment["id"]) is None

    def test_a_held_event_no_longer_stored_is_left_to_a_person(
        self, settings: Settings, sandbox_state: SandboxState, run_worker: RunWorker, redis: Redis
    ) -> None:
        payment = intent(42, "100.00")
        lost = dispute(payment, "charge.dispute.created", "needs_response", "100.00")
        deliver(settings, "stripe", lost)
        run_worker()
        event = succeeded(payment)
        deliver(settings, "stripe", event)
        run_worker()
        redis.delete(redis_keys.event(f"stripe:{event['id']}"))  # past EVENT_RETENTION_DAYS
        won = dispute(payment, "charge.dispute.closed", "won", "100.00")
        deliver(settings, "stripe", won)
        run_worker()
        failure = job_of(redis, won).meta["failure"]
        assert failure["error_class"] == "PaymentReinstated"
        assert f"stripe:{event['id']}" in failure["reason"]
        assert sandbox_state.invoices[42]["PaidOn"] is None

    def test_a_partly_disputed_payment_counts_in_full_once_the_dispute_is_won(
        self, settings: Settings, sandbox_state: SandboxState, run_worker: RunWorker, redis: Redis
    ) -> None:
        payment = intent(42, "100.00")
        deliver(
            settings,
            "stripe",
            dispute(payment, "charge.dispute.created", "needs_response", "40.00"),
        )
        run_worker()
        event = succeeded(payment)
        deliver(settings, "stripe", event)
        run_worker()
        assert result_of(redis, event) == "partially_paid"
        deliver(settings, "stripe", dispute(payment, "charge.dispute.closed", "won", "40.00"))
        run_worker()
        assert result_of(redis, event) == "applied"
        assert sandbox_state.invoices[42]["PaidOn"] is not None
        assert counted(redis) == (Decimal("100.00"), Decimal(0))

    def test_a_refund_that_failed_no_longer_counts(
        self, settings: Settings, sandbox_state: SandboxState, run_worker: RunWorker, redis: Redis
    ) -> None:
        payment = intent(42, "100.00")
        deliver(
            settings,
            "stripe",
            refund(payment, "re_A", "100.00"),
            refunded_so_far(payment, "100.00"),
        )
        run_worker()
        event = succeeded(payment)
        deliver(settings, "stripe", event)
        run_worker()
        assert result_of(redis, event) == "reversed"
        # Stripe: the refund failed (the card was closed). Stripe states it with the
        # refund's own events only; the charge's running total is not stated again.
        deliver(
            settings,
            "stripe",
            refund(payment, "re_A", "100.00", "charge.refund.updated", status="failed"),
            refund(payment, "re_A", "100.00", "refund.failed", status="failed"),
        )
        run_worker()
        assert result_of(redis, event) == "applied"
        assert sandbox_state.invoices[42]["PaidOn"] is not None

    def test_braintree_dispute_won_applies_the_payment_it_stopped(
        self, settings: Settings, sandbox_state: SandboxState, run_worker: RunWorker
    ) -> None:
        # The SDK's own samples: dispute_lost, then dispute_won, of the paying transaction.
        deliver(settings, "braintree", braintree_sdk_sample("dispute_lost", "txn_4242"))
        run_worker()
        deliver(settings, "braintree", braintree_paid(transaction_id="txn_4242"))
        run_worker()
        assert sandbox_state.invoices[42]["PaidOn"] is None
        deliver(settings, "braintree", braintree_sdk_sample("dispute_won", "txn_4242"))
        run_worker()
        assert sandbox_state.invoices[42]["PaidOn"] is not None
        assert [t["Token"] for t in tokens_of(sandbox_state, 42)] == ["txn_4242"]

    def test_a_gocardless_refund_that_failed_no_longer_counts(
        self,
        settings: Settings,
        sandbox_state: SandboxState,
        gocardless_state: GoCardlessState,
        run_worker: RunWorker,
    ) -> None:
        payment = add_payment(gocardless_state, 42)
        add_refund(gocardless_state, "RF1", payment, amount_minor=10000)
        deliver(settings, "gocardless", {"events": [gocardless_samples.refund_event("RF1")]})
        run_worker()
        confirmed = gocardless_samples.payment_event(payment, "confirmed")
        deliver(settings, "gocardless", {"events": [confirmed]})
        run_worker()
        assert sandbox_state.invoices[42]["PaidOn"] is None
        failed = gocardless_samples.refund_event("RF1", "failed")
        deliver(settings, "gocardless", {"events": [failed]})
        run_worker()
        assert sandbox_state.invoices[42]["PaidOn"] is not None

    def test_a_dispute_won_after_it_was_flagged_says_the_flag_is_moot(
        self,
        settings: Settings,
        sandbox_state: SandboxState,
        run_worker: RunWorker,
        redis: Redis,
        queue: Queue,
    ) -> None:
        payment = intent(42, "100.00")
        deliver(settings, "stripe", succeeded(payment))
        run_worker()
        lost = dispute(payment, "charge.dispute.created", "needs_response", "100.00")
        deliver(settings, "stripe", lost)
        run_worker()
        assert job_of(redis, lost).meta["failure"]["error_class"] == "PaymentReversed"
        won = dispute(payment, "charge.dispute.closed", "won", "100.00")
        deliver(settings, "stripe", won)
        run_worker()
        note = last_note(redis, won)
        assert f"the PaymentReversed failure of stripe:{lost['id']} is moot" in note
        assert len(tokens_of(sandbox_state, 42)) == 1


def last_note(redis: Redis, event: dict[str, Any]) -> str:
    """What the event's last run said, as its trail keeps it."""
    return str(Trail(redis, ttl_seconds=60).history(f"stripe:{event['id']}")[-1])


# -- found in review ----------------------------------------------------------------------


def test_a_stripe_inquiry_takes_no_money_and_stops_nothing(
    settings: Settings, sandbox_state: SandboxState, run_worker: RunWorker, redis: Redis
) -> None:
    # An inquiry (a dispute in a warning_* status: a retrieval request or an early fraud
    # warning) withdraws no funds; it is not a chargeback until Stripe says funds left.
    payment = intent(42, "100.00")
    deliver(
        settings,
        "stripe",
        dispute(payment, "charge.dispute.created", "warning_needs_response", "100.00"),
        dispute(payment, "charge.dispute.closed", "warning_closed", "100.00"),
    )
    run_worker()
    event = succeeded(payment)
    deliver(settings, "stripe", event)
    run_worker()
    assert result_of(redis, event) == "applied"
    assert sandbox_state.invoices[42]["PaidOn"] is not None


def _braintree_dispute(kind: str, dispute_id: str) -> bytes:
    """The SDK's own sample for transaction txn_4242, as dispute ``dispute_id``."""
    fields = parse_qs(braintree_sdk_sample(kind, "txn_4242").decode())
    xml = base64.b64decode(fields["bt_payload"][0]).decode()
    xml = xml.replace("<id>txn_4242</id>", f"<id>{dispute_id}</id>", 1)
    return braintree_samples.signed(xml, BRAINTREE_PUBLIC, BRAINTREE_PRIVATE)[0]


def test_a_second_braintree_dispute_after_one_was_won_still_counts(
    settings: Settings, sandbox_state: SandboxState, run_worker: RunWorker
) -> None:
    # Two disputes of one transaction (a chargeback won, then another one opened, say
    # a pre-arbitration): each is its own reversal; winning the first undoes only it.
    # Braintree names the transaction as the dispute's object: the dispute is the reversal.
    deliver(settings, "braintree", _braintree_dispute("dispute_won", "dispute_1"))
    run_worker()
    deliver(settings, "braintree", _braintree_dispute("dispute_opened", "dispute_2"))
    run_worker()
    deliver(settings, "braintree", braintree_paid(transaction_id="txn_4242"))
    run_worker()
    assert sandbox_state.invoices[42]["PaidOn"] is None
    assert tokens_of(sandbox_state, 42) == []


# -- records written by the previous release ----------------------------------------------


def _previous_release_payment(
    redis: Redis, state: SandboxState, payment: dict[str, Any], amount: str, *, paid: bool
) -> None:
    """What the release before this one left for a payment it applied to invoice 42: its
    token in Nexudus, a ':paid' marker, a ledger entry with no reversal, the binding."""
    token_id = next(state.next_token_id)
    state.tokens[token_id] = {"Id": token_id, "CoworkerInvoiceId": 42, "Token": payment["id"]}
    if paid:
        state.invoices[42].update(PaidOn="2026-11-30T10:00:00Z")
    token = payment["id"]
    redis.set(redis_keys.token_marker(42, "stripe", token), f"{token_id}:paid")
    redis.hset(
        redis_keys.invoice_applied(42),
        f"stripe:{token}",
        json.dumps({"amount": amount, "currency": "EUR"}),
    )
    redis.set(redis_keys.payment_binding("stripe", token), "42")


def test_a_payment_the_previous_release_settled_is_read_as_applied_and_its_refund_flagged(
    settings: Settings, sandbox_state: SandboxState, run_worker: RunWorker, redis: Redis
) -> None:
    payment = intent(42, "100.00")
    _previous_release_payment(redis, sandbox_state, payment, "100.00", paid=True)
    again = succeeded(payment)
    deliver(settings, "stripe", again)
    run_worker()
    assert result_of(redis, again) == "already_applied"
    assert writes(sandbox_state) == []
    back = refunded(payment, "40.00")
    deliver(settings, "stripe", back)
    run_worker()
    assert job_of(redis, back).meta["failure"]["error_class"] == "PaymentReversed"
    assert counted(redis) == (Decimal("60.00"), Decimal("40.00"))


def test_a_partial_payment_of_the_previous_release_settles_once_the_rest_is_recorded(
    settings: Settings, sandbox_state: SandboxState, run_worker: RunWorker, redis: Redis
) -> None:
    payment = intent(42, "60.00")
    _previous_release_payment(redis, sandbox_state, payment, "60.00", paid=False)
    sandbox_state.invoices[42].update(PaidAmount=40.0)  # the rest, recorded by an admin
    again = succeeded(payment)
    deliver(settings, "stripe", again)
    run_worker()
    assert result_of(redis, again) == "applied"
    assert writes(sandbox_state, "POST") == []  # its token was there already
    assert sandbox_state.invoices[42]["PaidOn"] is not None
