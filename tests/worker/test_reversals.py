"""Refunds, chargebacks and disputes lost (issue 17, points 1 and 2): money that went back
stops its payment's later events and replays, and leaves the invoice's running total.

Real Redis, real RQ workers (in-process and as `payhooks worker` processes), the Nexudus
sandbox and the providers' stand-ins over HTTP; providers' published bodies where they exist.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest
from redis import Redis
from rq import Queue

from payhooks.devtools.process_tree import kill_tree
from payhooks.devtools.sandbox.nexudus import INVOICES, TOKENS, Fault, SandboxState
from payhooks.providers.gocardless import sample as gocardless_samples
from payhooks.providers.gocardless.stand_in import GoCardlessState
from payhooks.providers.liqpay import sample as liqpay_samples
from payhooks.providers.paypal import sample as paypal_samples
from payhooks.settings import Settings
from payhooks.storage import redis_keys
from tests.support.delivery import deliver, finished, replay_event, writes
from tests.support.money import (
    dispute,
    intent,
    job_of,
    refund_created,
    refunded,
    replay,
    requeue_scheduled,
    result_of,
    run_worker_process,
    succeeded,
    tokens_of,
    wait_for,
)
from tests.support.processes import PAYHOOKS, RunWorker, run_burst_worker, worker_env
from tests.support.provider_payloads import (
    PAYPAL_SAMPLES,
    add_payment,
    add_refund,
    braintree_paid,
    braintree_sdk_sample,
)
from tests.support.settings import LIQPAY_KEY, with_settings
from workers.invoice_ledger import InvoiceLedger

# -- every provider whose reversal is its own event --------------------------------------


# What a family's payment and reversal are: delivered by (settings, stand-ins) -> jobs' keys.
Family = Callable[[Settings, "Worlds"], tuple[Callable[[], str], Callable[[], str]]]


class Worlds:
    def __init__(self, nexudus: SandboxState, gocardless: GoCardlessState) -> None:
        self.nexudus = nexudus
        self.gocardless = gocardless


def _stripe(kind: str) -> Family:
    def family(settings: Settings, worlds: Worlds) -> tuple[Callable[[], str], Callable[[], str]]:
        payment = intent(42, "100.00")
        reversal = {
            "charge.refunded": lambda: refunded(payment),
            "refund.created": lambda: refund_created(payment, "100.00"),
            "dispute lost": lambda: dispute(payment, "charge.dispute.closed", "lost", "100.00"),
        }[kind]()

        def paid() -> str:
            event = succeeded(payment)
            deliver(settings, "stripe", event)
            return f"stripe:{event['id']}"

        def undo() -> str:
            deliver(settings, "stripe", reversal)
            return f"stripe:{reversal['id']}"

        return paid, undo

    return family


def _gocardless(action: str) -> Family:
    def family(settings: Settings, worlds: Worlds) -> tuple[Callable[[], str], Callable[[], str]]:
        payment = add_payment(worlds.gocardless, 42)
        if action == "refund":
            add_refund(worlds.gocardless, "RF" + payment[2:], payment, amount_minor=10000)
            reversal = gocardless_samples.refund_event("RF" + payment[2:])
        else:
            reversal = gocardless_samples.payment_event(payment, action)
        confirmed = gocardless_samples.payment_event(payment, "confirmed")

        def send(event: dict[str, Any]) -> str:
            deliver(settings, "gocardless", {"events": [event]})
            return f"gocardless:{event['id']}"

        return (lambda: send(confirmed)), (lambda: send(reversal))

    return family


def _paypal(settings: Settings, worlds: Worlds) -> tuple[Callable[[], str], Callable[[], str]]:
    # PayPal's published PAYMENT.CAPTURE.REFUNDED body names capture 0JF852973C016714D.
    worlds.nexudus.invoices[42].update(CurrencyCode="USD", TotalAmount=0.99)
    capture = paypal_samples.capture_event(invoice_id="42", amount=Decimal("0.99"), currency="USD")
    capture["resource"]["id"] = "0JF852973C016714D"
    body = (PAYPAL_SAMPLES / "capture_refunded.json").read_bytes()

    def paid() -> str:
        deliver(settings, "paypal", paypal_samples.encoded(capture))
        return f"paypal:{capture['id']}"

    def undo() -> str:
        deliver(settings, "paypal", body)
        return f"paypal:{json.loads(body)['id']}"

    return paid, undo


def _braintree(settings: Settings, worlds: Worlds) -> tuple[Callable[[], str], Callable[[], str]]:
    # The SDK's own dispute_lost sample, for the transaction that paid.
    def paid() -> str:
        deliver(settings, "braintree", braintree_paid(transaction_id="txn_4242"))
        return "braintree"

    def undo() -> str:
        deliver(settings, "braintree", braintree_sdk_sample("dispute_lost", "txn_4242"))
        return "braintree"

    return paid, undo


def _liqpay(settings: Settings, worlds: Worlds) -> tuple[Callable[[], str], Callable[[], str]]:
    worlds.nexudus.invoices[42]["CurrencyCode"] = "UAH"
    payment = liqpay_samples.payment(order_id="42", amount=Decimal("100.00"), payment_id=7007)

    def send(status: str) -> str:
        deliver(settings, "liqpay", liqpay_samples.signed(dict(payment, status=status), LIQPAY_KEY))
        return f"liqpay:7007-{status}"

    return (lambda: send("success")), (lambda: send("reversed"))


FAMILIES: dict[str, Family] = {
    "stripe charge.refunded": _stripe("charge.refunded"),
    "stripe refund.created": _stripe("refund.created"),
    "stripe dispute lost": _stripe("dispute lost"),
    "gocardless charged_back": _gocardless("charged_back"),
    "gocardless late_failure_settled": _gocardless("late_failure_settled"),
    "gocardless refund": _gocardless("refund"),
    "paypal refund (published body)": _paypal,
    "braintree dispute_lost (SDK sample)": _braintree,
    "liqpay reversed": _liqpay,
}


@pytest.mark.parametrize("family", FAMILIES.values(), ids=FAMILIES.keys())
def test_a_reversal_seen_first_stops_its_payment(
    settings: Settings,
    sandbox_state: SandboxState,
    gocardless_state: GoCardlessState,
    run_worker: RunWorker,
    queue: Queue,
    family: Family,
) -> None:
    # The reversal's job runs before the payment's (a retry, a late delivery, a replay):
    # the payment must record no token and set no PaidOn for money that went back.
    paid, undo = family(settings, Worlds(sandbox_state, gocardless_state))
    undo()
    run_worker()
    assert sandbox_state.calls == []  # a reversal of a payment never applied needs no call
    paid()
    run_worker()
    assert len(queue.failed_job_registry) == 0
    assert tokens_of(sandbox_state, 42) == []
    assert sandbox_state.invoices[42]["PaidOn"] is None
    assert writes(sandbox_state) == []


# -- Stripe, in the orders the issue describes --------------------------------------------


class TestRefundBeforeTheRetry:
    @pytest.mark.parametrize("failing", ["GET", "PUT"])
    def test_a_refund_seen_while_the_payment_waits_for_its_retry_stops_it(
        self,
        settings: Settings,
        sandbox_state: SandboxState,
        run_worker: RunWorker,
        redis: Redis,
        queue: Queue,
        failing: str,
    ) -> None:
        # payment_intent.succeeded meets a Nexudus 503 (before anything was written, or
        # after its token was recorded and counted) and goes back to RQ; charge.refunded
        # arrives meanwhile; then the payment's retry runs.
        path = f"{INVOICES}/42" if failing == "GET" else INVOICES
        sandbox_state.faults.append(Fault(failing, path, 503, times=1))
        patient = with_settings(settings, job_retries_in_place=0, job_retry_base_seconds=60)
        payment = intent(42, "100.00")
        event = succeeded(payment)
        deliver(patient, "stripe", event)
        run_burst_worker(patient, redis, queue)
        assert job_of(redis, event).get_status() == "scheduled"
        refund = refunded(payment)
        deliver(settings, "stripe", refund)
        run_worker()
        assert result_of(redis, refund) == "no_write"
        requeue_scheduled(redis, queue)
        run_worker()
        assert result_of(redis, event) == "reversed"
        assert sandbox_state.invoices[42]["PaidOn"] is None
        assert len(tokens_of(sandbox_state, 42)) == (1 if failing == "PUT" else 0)
        assert writes(sandbox_state, "PUT") == []

    def test_a_failed_replay_after_the_refund_does_not_mark_the_invoice_paid(
        self,
        settings: Settings,
        sandbox_state: SandboxState,
        run_worker: RunWorker,
        redis: Redis,
        queue: Queue,
    ) -> None:
        # The token POST succeeds, the PUT fails for good (400); the member is refunded;
        # the operator fixes the record and replays the failed job, as the README says.
        sandbox_state.faults.append(Fault("PUT", INVOICES, 400, times=1))
        payment = intent(42, "100.00")
        event = succeeded(payment)
        deliver(settings, "stripe", event)
        run_worker()
        assert job_of(redis, event).get_status() == "failed"
        deliver(settings, "stripe", refunded(payment))
        run_worker()
        replay(redis, queue, job_of(redis, event))
        run_worker()
        assert result_of(redis, event) == "reversed"
        assert sandbox_state.invoices[42]["PaidOn"] is None
        assert writes(sandbox_state, "PUT") == []

    def test_a_refund_arriving_while_the_payment_is_being_applied_is_flagged(
        self, settings: Settings, sandbox_state: SandboxState, run_worker: RunWorker, redis: Redis
    ) -> None:
        # Concurrent workers: the payment's job has read that nothing went back and is in
        # its slow token POST when the refund's job starts. The refund waits for the
        # invoice, then finds it paid by that payment: flagged for a person (PaidOn is
        # never cleared by us).
        sandbox_state.faults.append(Fault("POST", TOKENS, 200, delay=1.5))
        payment = intent(42, "100.00")
        deliver(settings, "stripe", succeeded(payment))
        worker = run_worker_process(settings)
        try:
            wait_for(lambda: any(c.method == "GET" for c in sandbox_state.calls), 20, "the GET")
            refund = refunded(payment)
            deliver(settings, "stripe", refund)
            run_worker()
        finally:
            worker.communicate(timeout=60)
        assert sandbox_state.invoices[42]["PaidOn"] is not None
        failure = job_of(redis, refund).meta["failure"]
        assert failure["error_class"] == "PaymentReversed"
        assert (
            f"payment {payment['id']} was reversed after it was applied to invoice 42"
            in (failure["reason"])
        )

    def test_our_put_landing_after_the_refund_looked_is_flagged_by_the_retry(
        self,
        settings: Settings,
        sandbox_state: SandboxState,
        run_worker: RunWorker,
        redis: Redis,
        queue: Queue,
    ) -> None:
        # The payment's PUT times out here but lands 2.5 s after it was sent; the refund's
        # job looks in between (PaidOn not set yet). The payment's retry, after RQ's
        # backoff, finds PaidOn set for money that went back: flagged for a person.
        quick = with_settings(
            settings, nexudus_timeout_seconds=1, job_retries_in_place=0, job_retry_base_seconds=60
        )
        sandbox_state.faults.append(Fault("PUT", INVOICES, 200, delay=2.5, lands_late=True))
        payment = intent(42, "100.00")
        event = succeeded(payment)
        deliver(quick, "stripe", event)
        run_burst_worker(quick, redis, queue)
        refund = refunded(payment)
        deliver(settings, "stripe", refund)
        run_worker()
        assert result_of(redis, refund) == "no_write"
        wait_for(lambda: sandbox_state.puts_applied[42] == 1, 10, "the late PUT")
        requeue_scheduled(redis, queue)
        run_worker()
        assert job_of(redis, event).meta["failure"]["error_class"] == "PaymentReversed"

    @pytest.mark.slow
    def test_a_refund_after_a_crash_between_the_post_and_the_put_stops_the_payment(
        self, settings: Settings, sandbox_state: SandboxState, run_worker: RunWorker, redis: Redis
    ) -> None:
        # The worker is killed once its token POST landed, while its PUT is on the way
        # (and never lands); the refund comes once the dead job's lock lapsed; then the
        # abandoned job is retried, as a live worker's maintenance does.
        short = with_settings(settings, job_timeout_seconds=4)
        sandbox_state.faults.append(Fault("PUT", INVOICES, 200, delay=5))
        payment = intent(42, "100.00")
        event = succeeded(payment)
        deliver(short, "stripe", event)
        worker = subprocess.Popen(
            [*PAYHOOKS, "worker", "--burst"],
            env=worker_env(settings, LOG_LEVEL="WARNING"),
            stderr=subprocess.DEVNULL,
        )
        try:
            wait_for(lambda: len(sandbox_state.tokens) == 1, 20, "the token POST")
        finally:
            kill_tree(worker.pid)  # its work horse too
            worker.communicate(timeout=30)
        wait_for(lambda: not redis.exists(redis_keys.invoice_lock(42)), 20, "the lock to lapse")
        refund = refunded(payment)
        deliver(settings, "stripe", refund)
        run_worker()
        assert result_of(redis, refund) == "no_write"
        Queue(settings.queue_name, connection=redis).enqueue_job(job_of(redis, event))
        run_worker()
        assert result_of(redis, event) == "reversed"
        assert sandbox_state.invoices[42]["PaidOn"] is None
        assert len(tokens_of(sandbox_state, 42)) == 1
        assert sandbox_state.puts_applied[42] == 0


# -- the ledger ---------------------------------------------------------------------------


class TestRefundedMoneyLeavesTheLedger:
    def test_half_paid_refunded_and_half_paid_again_is_not_settled(
        self, settings: Settings, sandbox_state: SandboxState, run_worker: RunWorker, redis: Redis
    ) -> None:
        first, second = intent(42, "50.00"), intent(42, "50.00")
        deliver(settings, "stripe", succeeded(first))
        run_worker()
        refund = refunded(first)
        deliver(settings, "stripe", refund)
        run_worker()
        assert result_of(redis, refund) == "no_write"
        again = succeeded(second)
        deliver(settings, "stripe", again)
        run_worker()
        assert sandbox_state.invoices[42]["PaidOn"] is None
        assert result_of(redis, again) == "partially_paid"
        notes = {t["Token"]: t["Notes"] for t in tokens_of(sandbox_state, 42)}
        assert "running total 50.00 of 100.00 EUR, 50.00 still due" in notes[second["id"]]
        assert list(InvoiceLedger(redis).applied(42)) == [f"stripe:{second['id']}"]

    @pytest.mark.parametrize("refund_the", ["first", "second"])
    def test_the_double_payment_runbook_works(
        self,
        settings: Settings,
        sandbox_state: SandboxState,
        run_worker: RunWorker,
        redis: Redis,
        queue: Queue,
        refund_the: str,
    ) -> None:
        # README: refund one of the two payments and handle it in Nexudus. Refunding the
        # one that paid (and reopening the invoice) lets the other one apply on replay;
        # refunding the second one leaves the invoice as it is, quietly.
        a, b = intent(42, "100.00"), intent(42, "100.00")
        deliver(settings, "stripe", succeeded(a))
        run_worker()
        b_paid = succeeded(b)
        deliver(settings, "stripe", b_paid)
        run_worker()
        assert job_of(redis, b_paid).meta["failure"]["error_class"] == "InvoiceAlreadyPaid"
        paid_on = sandbox_state.invoices[42]["PaidOn"]
        refund = refunded(a if refund_the == "first" else b)
        deliver(settings, "stripe", refund)
        run_worker()
        if refund_the == "second":
            assert result_of(redis, refund) == "no_write"
            assert sandbox_state.invoices[42]["PaidOn"] == paid_on
            return
        assert job_of(redis, refund).meta["failure"]["error_class"] == "PaymentReversed"
        assert sandbox_state.invoices[42]["PaidOn"] == paid_on  # never cleared by us
        sandbox_state.invoices[42].update(PaidOn=None, Paid=False, PaidAmount=0.0)  # reopened
        replay(redis, queue, job_of(redis, b_paid))
        run_worker()
        assert result_of(redis, b_paid) == "applied"
        assert sandbox_state.invoices[42]["PaidOn"] is not None
        assert list(InvoiceLedger(redis).applied(42)) == [f"stripe:{b['id']}"]

    def test_a_partial_refund_before_the_payment_counts_what_is_left(
        self, settings: Settings, sandbox_state: SandboxState, run_worker: RunWorker, redis: Redis
    ) -> None:
        payment = intent(42, "100.00")
        deliver(settings, "stripe", refund_created(payment, "30.00"))
        run_worker()
        event = succeeded(payment)
        deliver(settings, "stripe", event)
        run_worker()
        assert result_of(redis, event) == "partially_paid"
        assert sandbox_state.invoices[42]["PaidOn"] is None
        [token] = tokens_of(sandbox_state, 42)
        assert "30.00 EUR went back" in token["Notes"]
        assert "running total 70.00 of 100.00 EUR, 30.00 still due" in token["Notes"]

    def test_one_dispute_announced_by_several_events_is_taken_off_once(
        self, settings: Settings, sandbox_state: SandboxState, run_worker: RunWorker, redis: Redis
    ) -> None:
        payment = intent(42, "50.00")
        deliver(settings, "stripe", succeeded(payment))
        run_worker()
        deliver(
            settings,
            "stripe",
            dispute(payment, "charge.dispute.created", "needs_response", "20.00"),
            dispute(payment, "charge.dispute.funds_withdrawn", "needs_response", "20.00"),
            dispute(payment, "charge.dispute.closed", "lost", "20.00"),
        )
        run_worker()
        [counted] = InvoiceLedger(redis).applied(42).values()
        assert (counted.amount, counted.reversed) == (Decimal("30.00"), Decimal("20.00"))


def test_a_reversal_job_replayed_records_nothing_twice(
    settings: Settings, sandbox_state: SandboxState, run_worker: RunWorker, redis: Redis
) -> None:
    payment = intent(42, "100.00")
    refund = refund_created(payment, "40.00")
    deliver(settings, "stripe", refund)
    run_worker()
    assert replay_event(settings, redis, f"stripe:{refund['id']}").endswith(
        "queued as " + redis_keys.job_id(f"stripe:{refund['id']}")
    )
    run_worker()
    deliver(settings, "stripe", succeeded(payment))
    run_worker()
    [token] = tokens_of(sandbox_state, 42)
    assert "running total 60.00 of 100.00 EUR" in token["Notes"]
    assert finished(redis, f"stripe:{refund['id']}") == "no_write"
