"""Jobs applied by real RQ workers to the Nexudus sandbox over HTTP."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from redis import Redis
from rq import Queue
from rq.executions import Execution
from rq.job import Job
from rq.registry import FailedJobRegistry

from payhooks.devtools.sandbox.nexudus import INVOICES, TOKENS, Fault, SandboxState, invoice_record
from payhooks.providers.stripe import sample as samples
from payhooks.providers.stripe.sample import paid_event
from payhooks.settings import Settings
from payhooks.storage import redis_keys
from payhooks.storage.trail import Trail
from tests.support.delivery import api_calls, deliver, finished, replay_event, writes
from tests.support.money import wait_for
from tests.support.processes import RunWorker, run_burst_worker
from tests.support.settings import with_settings


def failure_of(queue: Queue, job_id: str) -> dict[str, Any]:
    job = Job.fetch(job_id, connection=queue.connection)
    assert job.get_status() == "failed"
    return dict(job.meta["failure"])


class TestPaid:
    def test_marks_invoice_paid_with_three_calls(
        self, settings: Settings, sandbox_state: SandboxState, run_worker: RunWorker
    ) -> None:
        event = paid_event(42)
        deliver(settings, "stripe", event)
        run_worker()

        invoice = sandbox_state.invoices[42]
        assert invoice["Paid"] is True
        assert invoice["PaidOn"] is not None
        [token] = sandbox_state.tokens.values()
        assert token["CoworkerInvoiceId"] == 42
        assert token["Token"] == event["data"]["object"]["id"]
        assert token["RegularPaymentProvider"] == 2
        assert event["id"] in token["Notes"]
        assert "100.00 EUR" in token["Notes"]
        assert api_calls(sandbox_state) == [
            ("GET", f"{INVOICES}/42", 200),
            ("POST", TOKENS, 200),
            ("PUT", INVOICES, 200),
        ]

    def test_put_keeps_every_other_field(
        self, settings: Settings, sandbox_state: SandboxState, run_worker: RunWorker
    ) -> None:
        sandbox_state.invoices[42].update(
            SystemId="ops-7", CustomData="keep me", BillToState="Kent"
        )
        before = dict(sandbox_state.invoices[42])
        deliver(settings, "stripe", paid_event(42))
        run_worker()
        after = sandbox_state.invoices[42]
        changed = {k for k in before if before[k] != after.get(k)}
        assert changed == {"PaidOn", "Paid", "PaidAmount", "UpdatedOn"}

    def test_bacs_payment_recorded_as_stripe_bacs(
        self, settings: Settings, sandbox_state: SandboxState, run_worker: RunWorker
    ) -> None:
        deliver(settings, "stripe", paid_event(42, method="bacs_debit"))
        run_worker()
        [token] = sandbox_state.tokens.values()
        assert token["RegularPaymentProvider"] == 13

    def test_paid_events_of_one_payment_together_give_one_token_one_put(
        self, settings: Settings, sandbox_state: SandboxState, run_worker: RunWorker
    ) -> None:
        intent = samples.payment_intent(invoice_id=42, amount=Decimal("100.00"))
        deliver(
            settings,
            "stripe",
            samples.event("payment_intent.succeeded", intent),
            samples.event("charge.succeeded", samples.charge(intent)),
            samples.event("invoice.paid", samples.invoice_paid(intent)),
            samples.event("checkout.session.completed", samples.checkout_session(intent)),
        )
        run_worker()
        assert len(sandbox_state.tokens) == 1
        assert writes(sandbox_state) == [("POST", TOKENS, 200), ("PUT", INVOICES, 200)]

    def test_duplicate_of_applied_event_writes_nothing(
        self, settings: Settings, sandbox_state: SandboxState, run_worker: RunWorker, redis: Redis
    ) -> None:
        event = paid_event(42)
        deliver(settings, "stripe", event)
        run_worker()
        # Replaying the same event (as ops would) after it was applied.
        sandbox_state.calls.clear()
        key = f"stripe:{event['id']}"
        assert replay_event(settings, redis, key) == f"{key}: queued as {redis_keys.job_id(key)}"
        run_worker()
        assert finished(redis, key) == "already_applied"
        assert writes(sandbox_state) == []
        assert len(sandbox_state.tokens) == 1

    def test_invoice_found_by_number_ignores_substring_matches(
        self, settings: Settings, sandbox_state: SandboxState, run_worker: RunWorker
    ) -> None:
        sandbox_state.invoices[50] = invoice_record(50, InvoiceNumber="INV-7-2026")
        sandbox_state.invoices[51] = invoice_record(51, InvoiceNumber="INV-7")
        deliver(settings, "stripe", paid_event(None, metadata={"nexudus_invoice_number": "INV-7"}))
        run_worker()
        assert sandbox_state.invoices[51]["PaidOn"] is not None
        assert sandbox_state.invoices[50]["PaidOn"] is None
        assert [t["CoworkerInvoiceId"] for t in sandbox_state.tokens.values()] == [51]
        assert len([c for c in sandbox_state.calls if not c.write]) == 2  # search + GET

    def test_invoice_found_by_payment_reference(
        self, settings: Settings, sandbox_state: SandboxState, run_worker: RunWorker
    ) -> None:
        sandbox_state.invoices[60] = invoice_record(60, PaymentReference="BANKREF-60")
        deliver(
            settings, "stripe", paid_event(None, metadata={"nexudus_invoice_number": "BANKREF-60"})
        )
        run_worker()
        assert sandbox_state.invoices[60]["PaidOn"] is not None


class TestPendingFailedRefunded:
    def test_pending_records_token_then_paid_sets_paid_on(
        self, settings: Settings, sandbox_state: SandboxState, run_worker: RunWorker
    ) -> None:
        intent = samples.payment_intent(
            invoice_id=43, amount=Decimal("100.00"), method="us_bank_account", status="processing"
        )
        deliver(settings, "stripe", samples.event("payment_intent.processing", intent))
        run_worker()
        assert sandbox_state.invoices[43]["PaidOn"] is None
        [token] = sandbox_state.tokens.values()
        assert token["RegularPaymentProvider"] == 11
        assert "pending" in token["Notes"]

        succeeded = dict(intent, status="succeeded", amount_received=intent["amount"])
        deliver(settings, "stripe", samples.event("payment_intent.succeeded", succeeded))
        run_worker()
        assert sandbox_state.invoices[43]["PaidOn"] is not None
        assert len(sandbox_state.tokens) == 1

    @pytest.mark.parametrize("event_type", ["payment_intent.payment_failed", "charge.refunded"])
    def test_failed_and_refunded_write_nothing(
        self,
        settings: Settings,
        sandbox_state: SandboxState,
        run_worker: RunWorker,
        queue: Queue,
        event_type: str,
    ) -> None:
        sandbox_state.invoices[44]["PaidOn"] = "2026-11-02T10:00:00Z"
        intent = samples.payment_intent(invoice_id=44, amount=Decimal("100.00"))
        obj = samples.charge(intent) if event_type.startswith("charge") else intent
        obj["amount_refunded"] = obj["amount"]
        event = samples.event(event_type, obj)
        deliver(settings, "stripe", event)
        run_worker()
        assert sandbox_state.calls == []
        assert sandbox_state.invoices[44]["PaidOn"] == "2026-11-02T10:00:00Z"
        assert finished(queue.connection, f"stripe:{event['id']}") == "no_write"


class TestAmountGuard:
    def test_amount_below_outstanding_is_counted_as_a_partial_payment(
        self, settings: Settings, sandbox_state: SandboxState, run_worker: RunWorker, queue: Queue
    ) -> None:
        event = paid_event(42, amount="60.00")
        deliver(settings, "stripe", event)
        run_worker()
        assert sandbox_state.invoices[42]["PaidOn"] is None
        [token] = sandbox_state.tokens.values()
        assert (
            "partial payment: running total 60.00 of 100.00 EUR, 40.00 still due"
            in (token["Notes"])
        )
        assert finished(queue.connection, f"stripe:{event['id']}") == "partially_paid"

    def test_partly_paid_invoice_needs_only_the_rest(
        self, settings: Settings, sandbox_state: SandboxState, run_worker: RunWorker
    ) -> None:
        sandbox_state.invoices[42]["PaidAmount"] = 40.0
        deliver(settings, "stripe", paid_event(42, amount="60.00"))
        run_worker()
        assert sandbox_state.invoices[42]["PaidOn"] is not None

    def test_other_currency_is_not_paid(
        self, settings: Settings, sandbox_state: SandboxState, run_worker: RunWorker, queue: Queue
    ) -> None:
        event = paid_event(42, currency="GBP")
        deliver(settings, "stripe", event)
        run_worker()
        assert sandbox_state.invoices[42]["PaidOn"] is None
        failure = failure_of(queue, redis_keys.job_id(f"stripe:{event['id']}"))
        assert "currency GBP differs from the invoice's EUR" in failure["reason"]


class TestNexudusFailures:
    def test_401_re_authenticates_once(
        self, settings: Settings, sandbox_state: SandboxState, run_worker: RunWorker
    ) -> None:
        deliver(settings, "stripe", paid_event(42))
        run_worker()
        sandbox_state.access_tokens.clear()  # every token now answers 401
        deliver(settings, "stripe", paid_event(43))
        run_worker()
        assert sandbox_state.invoices[43]["PaidOn"] is not None
        assert sandbox_state.grants == 2

    def test_expiring_token_is_refreshed_with_the_rotated_refresh_token(
        self, settings: Settings, sandbox_state: SandboxState, run_worker: RunWorker
    ) -> None:
        sandbox_state.token_lifetime_seconds = 200  # inside the 300 s refresh margin
        for invoice_id in (42, 43, 44):
            deliver(settings, "stripe", paid_event(invoice_id))
        run_worker()
        assert all(sandbox_state.invoices[i]["PaidOn"] for i in (42, 43, 44))
        # The first grant is a password grant; each later one used the newest refresh token.
        assert sandbox_state.grants >= 3
        assert len(sandbox_state.refresh_tokens) == 1

    def test_429_is_honoured_and_applied(
        self, settings: Settings, sandbox_state: SandboxState, run_worker: RunWorker
    ) -> None:
        sandbox_state.faults.append(Fault("PUT", INVOICES, 429, times=2, retry_after=0.1))
        deliver(settings, "stripe", paid_event(42))
        run_worker()
        assert sandbox_state.invoices[42]["PaidOn"] is not None
        assert [c.status for c in sandbox_state.calls if c.method == "PUT"] == [429, 429, 200]

    def test_409_is_throttling_not_a_conflict(
        self, settings: Settings, sandbox_state: SandboxState, run_worker: RunWorker
    ) -> None:
        sandbox_state.faults.append(Fault("POST", TOKENS, 409, times=1, retry_after=0))
        deliver(settings, "stripe", paid_event(42))
        run_worker()
        assert sandbox_state.invoices[42]["PaidOn"] is not None
        assert len(sandbox_state.tokens) == 1

    def test_a_blip_of_5xx_heals_in_place_without_waiting_for_rq(
        self, settings: Settings, sandbox_state: SandboxState, redis: Redis, queue: Queue
    ) -> None:
        # Six 500s in a row: retried in place within seconds, not after RQ's backoff
        # (10 s doubling), which a burst worker would not even wait for.
        patient = with_settings(settings, job_retry_base_seconds=10)
        sandbox_state.faults.append(Fault("GET", f"{INVOICES}/42", 500, times=6))
        event = paid_event(42)
        deliver(patient, "stripe", event)
        run_burst_worker(patient, redis, queue)
        assert sandbox_state.invoices[42]["PaidOn"] is not None
        key = f"stripe:{event['id']}"
        assert finished(queue.connection, key) == "applied"
        # RQ never had to retry: one run, which applied it.
        stages = [e["stage"] for e in Trail(redis, ttl_seconds=60).history(key)]
        assert "retrying" not in stages
        assert stages.count("applied") == 1

    def test_post_that_may_have_landed_is_searched_not_repeated(
        self, settings: Settings, sandbox_state: SandboxState, run_worker: RunWorker
    ) -> None:
        # The token is written but the answer is lost: the retry must find it.
        sandbox_state.faults.append(Fault("POST", TOKENS, 502, after_apply=True))
        deliver(settings, "stripe", paid_event(42))
        run_worker()
        assert len(sandbox_state.tokens) == 1
        assert sandbox_state.invoices[42]["PaidOn"] is not None
        assert ("GET", TOKENS, 200) in api_calls(sandbox_state)

    def test_token_search_near_miss_is_not_a_match(
        self, settings: Settings, sandbox_state: SandboxState, run_worker: RunWorker
    ) -> None:
        event = paid_event(42)
        token = event["data"]["object"]["id"]
        sandbox_state.tokens[1] = {
            "Id": 1,
            "CoworkerInvoiceId": 42,
            "Token": token + "_other",
            "Notes": None,
            "RegularPaymentProvider": 2,
        }
        # The first POST fails before writing, so the retry searches, and the search
        # (a substring match in Nexudus) returns only the near miss.
        sandbox_state.faults.append(Fault("POST", TOKENS, 503))
        deliver(settings, "stripe", event)
        run_worker()
        assert sorted(t["Token"] for t in sandbox_state.tokens.values()) == [
            token,
            token + "_other",
        ]
        assert sandbox_state.invoices[42]["PaidOn"] is not None

    def test_400_fails_at_once_with_nexudus_errors(
        self,
        settings: Settings,
        sandbox_state: SandboxState,
        run_worker: RunWorker,
        queue: Queue,
        redis: Redis,
    ) -> None:
        sandbox_state.faults.append(
            Fault(
                "PUT",
                INVOICES,
                400,
                body={
                    "Message": "BillToCity: is a required field",
                    "Value": None,
                    "WasSuccessful": False,
                    "Errors": [
                        {
                            "AttemptedValue": None,
                            "Message": "is a required field",
                            "PropertyName": "BillToCity",
                        }
                    ],
                },
            )
        )
        event = paid_event(42)
        deliver(settings, "stripe", event)
        run_worker()
        job_id = redis_keys.job_id(f"stripe:{event['id']}")
        assert job_id in FailedJobRegistry(queue=queue).get_job_ids()
        failure = failure_of(queue, job_id)
        assert failure["error_class"] == "NexudusPermanentError"
        assert "PUT /api/billing/coworkerinvoices -> 400" in failure["reason"]
        assert "BillToCity: is a required field" in failure["reason"]
        assert failure["attempt"] == 1
        assert [c.method for c in sandbox_state.calls].count("PUT") == 1

    def test_incomplete_invoice_record_is_never_put_back(
        self, settings: Settings, sandbox_state: SandboxState, run_worker: RunWorker, queue: Queue
    ) -> None:
        del sandbox_state.invoices[42]["BillToCity"]
        event = paid_event(42)
        deliver(settings, "stripe", event)
        run_worker()
        failure = failure_of(queue, redis_keys.job_id(f"stripe:{event['id']}"))
        assert "refusing to PUT an incomplete invoice record (no BillToCity)" in failure["reason"]
        assert [c.method for c in sandbox_state.calls].count("PUT") == 0

    def test_unknown_invoice_fails_with_a_reason(
        self, settings: Settings, run_worker: RunWorker, queue: Queue
    ) -> None:
        event = paid_event(4040)
        deliver(settings, "stripe", event)
        run_worker()
        failure = failure_of(queue, redis_keys.job_id(f"stripe:{event['id']}"))
        assert failure["error_class"] == "InvoiceNotFound"
        assert "invoice id 4040" in failure["reason"]

    def test_transient_failures_end_in_the_failed_registry(
        self, settings: Settings, sandbox_state: SandboxState, redis: Redis, queue: Queue
    ) -> None:
        # One invoice failing while Nexudus as a whole works (the breaker stays shut).
        quick = with_settings(settings, job_max_attempts=2, nexudus_breaker_min_calls=1000)
        sandbox_state.faults.append(Fault("GET", f"{INVOICES}/42", 500, times=100))
        event = paid_event(42)
        deliver(quick, "stripe", event)
        run_burst_worker(quick, redis, queue)
        failure = failure_of(queue, redis_keys.job_id(f"stripe:{event['id']}"))
        assert failure["transient"] is True
        assert failure["attempt"] == 2
        tries = 2 * (settings.job_retries_in_place + 1)  # each RQ attempt retries in place
        assert len([c for c in sandbox_state.calls if c.method == "GET"]) == tries


class TestOnePaymentOneInvoice:
    def test_payment_to_an_already_paid_invoice_is_flagged_not_hidden(
        self, settings: Settings, sandbox_state: SandboxState, run_worker: RunWorker, queue: Queue
    ) -> None:
        sandbox_state.invoices[42].update(PaidOn="2026-11-10T09:00:00Z", Paid=True)
        event = paid_event(42)
        deliver(settings, "stripe", event)
        run_worker()
        [token] = sandbox_state.tokens.values()
        assert "already paid" in token["Notes"]
        assert writes(sandbox_state, "PUT") == []
        failure = failure_of(queue, redis_keys.job_id(f"stripe:{event['id']}"))
        assert failure["error_class"] == "InvoiceAlreadyPaid"

    def test_already_paid_with_its_token_recorded_elsewhere_is_applied(
        self, settings: Settings, sandbox_state: SandboxState, run_worker: RunWorker, queue: Queue
    ) -> None:
        # Paid and recorded by Nexudus's own Stripe integration, say: no marker of ours.
        event = paid_event(42)
        token = event["data"]["object"]["id"]
        sandbox_state.invoices[42].update(PaidOn="2026-11-10T09:00:00Z", Paid=True)
        sandbox_state.tokens[5] = {
            "Id": 5,
            "CoworkerInvoiceId": 42,
            "Token": token,
            "RegularPaymentProvider": 2,
            "Notes": None,
        }
        deliver(settings, "stripe", event)
        run_worker()
        assert writes(sandbox_state) == []
        assert finished(queue.connection, f"stripe:{event['id']}") == "already_applied"

    def test_one_payment_cannot_settle_two_invoices(
        self, settings: Settings, sandbox_state: SandboxState, run_worker: RunWorker, queue: Queue
    ) -> None:
        intent = samples.payment_intent(invoice_id=42, amount=Decimal("100.00"))
        session = {**samples.checkout_session(intent), "client_reference_id": "43"}
        first = samples.event("payment_intent.succeeded", intent)
        second = samples.event("checkout.session.completed", session)
        deliver(settings, "stripe", first)
        run_worker()
        deliver(settings, "stripe", second)
        run_worker()
        assert sandbox_state.invoices[42]["PaidOn"] is not None
        assert sandbox_state.invoices[43]["PaidOn"] is None
        failure = failure_of(queue, redis_keys.job_id(f"stripe:{second['id']}"))
        assert failure["error_class"] == "PaymentAlreadyApplied"
        assert "already applied to invoice 42" in failure["reason"]

    def test_overpayment_is_applied_and_noted(
        self, settings: Settings, sandbox_state: SandboxState, run_worker: RunWorker
    ) -> None:
        deliver(settings, "stripe", paid_event(42, amount="150.00"))
        run_worker()
        assert sandbox_state.invoices[42]["PaidOn"] is not None
        [token] = sandbox_state.tokens.values()
        assert "overpaid: 150.00 EUR for 100.00 outstanding" in token["Notes"]


@pytest.mark.slow
class TestSlowNexudus:
    def test_job_timeout_is_transient_and_a_landed_post_is_not_repeated(
        self, settings: Settings, sandbox_state: SandboxState, redis: Redis, queue: Queue
    ) -> None:
        slow = with_settings(settings, job_timeout_seconds=10, nexudus_timeout_seconds=30)
        # The token is written at once, but the answer comes after the job's time is up.
        sandbox_state.faults.append(Fault("POST", TOKENS, 503, delay=12, after_apply=True))
        event = paid_event(42)
        deliver(slow, "stripe", event)
        run_burst_worker(slow, redis, queue)
        assert len(sandbox_state.tokens) == 1
        assert sandbox_state.invoices[42]["PaidOn"] is not None
        assert finished(redis, f"stripe:{event['id']}") == "applied"


def test_a_job_whose_earlier_run_was_abandoned_still_finishes(
    settings: Settings, sandbox_state: SandboxState, redis: Redis, run_worker: RunWorker
) -> None:
    # What a worker killed mid-job leaves behind once its heartbeat lapses: an execution
    # in the job's registry whose record has expired. RQ 2.12 cannot delete such a job
    # (Execution.fetch raises), so a job deleted as it finishes (result_ttl=0) failed after
    # its payment was applied, and every retry ran it again (bench.fault caught it).
    event = paid_event(42)
    deliver(settings, "stripe", event)
    event_key = f"stripe:{event['id']}"
    job = Job.fetch(redis_keys.job_id(event_key), connection=redis)
    # Taken from the queue by a worker that started it (its execution, with a heartbeat
    # TTL) and was then killed.
    Queue(settings.queue_name, connection=redis).remove(job)
    with redis.pipeline() as pipeline:
        abandoned = Execution.create(job, ttl=1, pipeline=pipeline)
        pipeline.execute()
    wait_for(lambda: not redis.exists(abandoned.key), 10, "the abandoned execution to expire")

    run_worker()  # its registry clean-up finds the job abandoned and runs it again

    assert finished(redis, event_key) == "applied"
    assert FailedJobRegistry(settings.queue_name, connection=redis).get_job_ids() == []
    assert sandbox_state.invoices[42]["PaidOn"] is not None
