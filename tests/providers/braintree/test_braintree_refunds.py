"""Braintree refunds: Braintree notifies none, so reconciliation searches them (credit
transactions, through the official SDK) and each is the REFUNDED event of its sale's
payment; a real RQ worker nets it against the payment whichever comes first, and the Nexudus
sandbox shows what was written.

Fixtures: the stand-in's refunds are credits as braintree-python's integration tests show
them (tests/integration/test_transaction.py: ``test_successful_refund``, type credit and
``refunded_transaction_id``; ``test_multiple_successful_partial_refunds``, the sale's
``refund_ids``; ``test_refund_returns_an_error_if_hard_declined``, a refund
``processor_declined``); sales as in test_braintree_reconcile.py.
"""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from redis import Redis
from rq import Queue

from payhooks.cli.audit import run_audit
from payhooks.cli.ops import Filters, Ops
from payhooks.cli.reconcile import reconcile_providers
from payhooks.devtools.sandbox.nexudus import SandboxState
from payhooks.domain.events import Ignored, PaymentEvent, PaymentKind
from payhooks.providers.braintree import sample as braintree_samples
from payhooks.providers.braintree.lister import BraintreeLister
from payhooks.providers.braintree.receiver import BraintreeWebhook
from payhooks.providers.braintree.stand_in import (
    BraintreeState,
    RefundRefused,
    refund_record,
    transaction_record,
)
from payhooks.providers.kit.listing import Window
from payhooks.settings import Settings
from payhooks.storage.trail import Trail
from tests.support.braintree_searches import FORM, last, sale, stages
from tests.support.delivery import api_calls, deliver
from tests.support.processes import RunWorker
from tests.support.provider_payloads import (
    BRAINTREE_PRIVATE,
    BRAINTREE_PUBLIC,
    braintree_paid,
    braintree_sdk_sample,
)
from workers.apply import reverse_payment
from workers.context import WorkerContext
from workers.invoice_ledger import InvoiceLedger


def history(redis: Redis, event_key: str) -> list[dict[str, Any]]:
    return Trail(redis, ttl_seconds=60).history(event_key)


def listed(settings: Settings, window: Window) -> list[Any]:
    lister = BraintreeLister.from_settings(settings)
    events, cursor = [], None
    while True:
        page = lister.fetch(window, cursor, thorough=True)
        events += [e for record in page.records for e in lister.normalise(record)]
        cursor = page.cursor
        if not page.more:
            return events


def test_a_refund_is_the_refunded_event_of_its_sales_payment_keyed_by_the_credit(
    settings: Settings, sandbox: Any, braintree_state: BraintreeState
) -> None:
    sale(braintree_state, "bt_sale", "42")
    refund_record(braintree_state, "bt_ref1", "bt_sale", amount="30.00")
    refund_record(braintree_state, "bt_ref2", "bt_sale", amount="20.00", order_id="42")
    declined = refund_record(braintree_state, "bt_ref3", "bt_sale", amount="10.00")
    declined.update(
        status="processor_declined", history=[("processor_declined", datetime.now(UTC))]
    )
    # A detached credit (Transaction.credit) refunds no sale: the search leaves it out.
    braintree_state.transactions["bt_credit"] = {
        **transaction_record("bt_credit", order_id="", amount="5.00"),
        "type": "credit",
    }

    events = listed(settings, last())

    # Refunds first (their jobs run before the sale's), then the sale in both searches.
    keys = [e.key for e in events if isinstance(e, PaymentEvent)]
    assert sorted(keys[:3]) == [
        "braintree:transaction-bt_ref1-refunded",
        "braintree:transaction-bt_ref2-refunded",
        "braintree:transaction-bt_ref3-reinstated",
    ]
    assert keys[3:] == ["braintree:transaction-bt_sale-paid"] * 2
    by_key = {e.key: e for e in events if isinstance(e, PaymentEvent)}
    first = by_key["braintree:transaction-bt_ref1-refunded"]
    assert (first.kind, first.token, first.object_id) == (
        PaymentKind.REFUNDED,
        "bt_sale",
        "bt_sale",
    )
    assert (first.amount, first.currency, first.details) == (
        Decimal("30.00"),
        "EUR",
        {"refund": "bt_ref1"},
    )
    paid = by_key["braintree:transaction-bt_sale-paid"]
    # The sale refunded in part is paid all the same, at its own amount, same token.
    assert (paid.kind, paid.token, paid.amount) == (PaymentKind.PAID, "bt_sale", Decimal("100.00"))
    undone = by_key["braintree:transaction-bt_ref3-reinstated"]
    assert (undone.kind, undone.details) == (PaymentKind.REINSTATED, {"refund": "bt_ref3"})
    assert "bt_credit" not in json.dumps([e.event_id for e in events])


def test_the_stand_in_refuses_refunds_as_braintree_does(braintree_state: BraintreeState) -> None:
    sale(braintree_state, "bt_sale", "42")
    sale(braintree_state, "bt_unsettled", "42", status="submitted_for_settlement")
    with pytest.raises(RefundRefused, match="91506"):
        refund_record(braintree_state, "r0", "bt_unsettled")
    refund_record(braintree_state, "r1", "bt_sale", amount="60.00")
    with pytest.raises(RefundRefused, match="91521"):
        refund_record(braintree_state, "r2", "bt_sale", amount="40.01")
    with pytest.raises(RefundRefused, match="91505"):
        refund_record(braintree_state, "r3", "r1")
    assert refund_record(braintree_state, "r4", "bt_sale")["amount"] == "40.00"
    with pytest.raises(RefundRefused, match="91512"):
        refund_record(braintree_state, "r5", "bt_sale")
    assert braintree_state.transactions["bt_sale"]["refund_ids"] == ["r1", "r4"]


def test_a_refund_of_a_payment_that_settled_its_invoice_is_flagged_never_unpaid(
    settings: Settings,
    redis: Redis,
    sandbox_state: SandboxState,
    braintree_state: BraintreeState,
    run_worker: RunWorker,
    queue: Queue,
) -> None:
    """(a) Payment applied (its webhook), then its refund listed: flagged for a person."""
    sale(braintree_state, "bt_paid", "43", payment_instrument_type="us_bank_account")
    deliver(settings, "braintree", braintree_paid(order_id="43", transaction_id="bt_paid"))
    run_worker()
    paid_on = sandbox_state.invoices[43]["PaidOn"]
    assert paid_on is not None
    refund_record(braintree_state, "bt_back", "bt_paid", amount="30.00")
    calls_before = len(api_calls(sandbox_state))

    [row] = reconcile_providers(settings, redis, last(), ["braintree"])
    assert (row["queued"], row["seen"], row["result"]) == (1, 2, "ok")
    run_worker()

    refund = "braintree:transaction-bt_back-refunded"
    [failed] = [e for e in history(redis, refund) if e["stage"] == "failed"]
    assert failed["error_class"] == "PaymentReversed"
    assert "30.00 EUR went back (bt_back)" in str(failed["reason"])
    assert len(queue.failed_job_registry) == 1
    # The refund names no invoice; its job found 43 through the payment, and says so to
    # `failed list --invoice 43` and `trace 43`.
    [listed], _ = Ops(settings, redis).failed_jobs(Filters(invoice="43"))
    assert (listed.event_id, listed.invoice) == ("transaction-bt_back-refunded", "43")
    assert refund in Trail(redis, ttl_seconds=60).events_for_invoice(43)
    # Never un-paid: one read of the invoice, no write.
    assert sandbox_state.invoices[43]["PaidOn"] == paid_on
    assert api_calls(sandbox_state)[calls_before:] == [
        ("GET", "/api/billing/coworkerinvoices/43", 200)
    ]


def test_a_partial_refund_seen_before_its_payment_leaves_the_rest_counted(
    settings: Settings,
    redis: Redis,
    sandbox_state: SandboxState,
    braintree_state: BraintreeState,
    run_worker: RunWorker,
) -> None:
    """(b) A sale refunded in part whose payment no webhook brought: the scan queues the
    refund first; the payment is then counted for what is left, a partial payment."""
    sale(braintree_state, "bt_part", "42")
    refund_record(braintree_state, "bt_part_back", "bt_part", amount="30.00")

    [row] = reconcile_providers(settings, redis, last(), ["braintree"])
    assert (row["queued"], row["seen"], row["ignored"]) == (2, 1, 0)
    run_worker()

    refund, paid = (
        "braintree:transaction-bt_part_back-refunded",
        "braintree:transaction-bt_part-paid",
    )
    assert stages(redis, refund)[-1] == "no_write"
    assert stages(redis, paid)[-1] == "partially_paid"
    assert history(redis, refund)[-1]["at"] < history(redis, paid)[-1]["at"]
    assert sandbox_state.invoices[42]["PaidOn"] is None
    [token] = [t for t in sandbox_state.tokens.values() if t["Token"] == "bt_part"]
    assert (
        "30.00 EUR went back (bt_part_back) before it was applied: 70.00 counted"
        in (token["Notes"])
    )
    assert "running total 70.00 of 100.00 EUR, 30.00 still due" in token["Notes"]
    [applied] = InvoiceLedger(redis).applied(42).values()
    assert (applied.amount, applied.reversed) == (Decimal("70.00"), Decimal("30.00"))


def test_one_refund_listed_by_overlapping_scans_and_replayed_counts_once(
    settings: Settings,
    redis: Redis,
    sandbox_state: SandboxState,
    braintree_state: BraintreeState,
    run_worker: RunWorker,
    queue: Queue,
    worker_context: WorkerContext,
) -> None:
    """(c) A partial payment (60.00 of 100.00) refunded 10.00: the refund found by two
    overlapping windows, and its event delivered twice more, takes 10.00 off once."""
    sale(braintree_state, "bt_sixty", "44", amount="60.00")
    refund_record(braintree_state, "bt_ten", "bt_sixty", amount="10.00")
    ledger = InvoiceLedger(redis)
    [first] = reconcile_providers(settings, redis, last(1), ["braintree"])
    assert (first["queued"], first["seen"]) == (2, 1)
    run_worker()
    assert ledger.applied(44)["braintree:bt_sixty"].amount == Decimal("50.00")

    [second] = reconcile_providers(settings, redis, last(2), ["braintree"])
    assert (second["queued"], second["seen"]) == (0, 3)
    # The same refund's job run twice more (a replay): still once.
    [refund] = [e for e in listed(settings, last()) if e.kind is PaymentKind.REFUNDED]
    for _ in range(2):
        reverse_payment(refund, worker_context.nexudus, ledger, worker_context.markers)
    assert queue.count == 0
    applied = ledger.applied(44)["braintree:bt_sixty"]
    assert (applied.amount, applied.reversed) == (Decimal("50.00"), Decimal("10.00"))
    assert sandbox_state.invoices[44]["PaidOn"] is None


def test_a_sale_refunded_in_full_and_never_applied_writes_nothing_to_nexudus(
    settings: Settings,
    redis: Redis,
    sandbox_state: SandboxState,
    braintree_state: BraintreeState,
    run_worker: RunWorker,
) -> None:
    """(d) Both found by one scan: the refund's job first, the payment's finds nothing left."""
    sale(braintree_state, "bt_gone", "42")
    refund_record(braintree_state, "bt_gone_back", "bt_gone")

    [row] = reconcile_providers(settings, redis, last(), ["braintree"])
    assert row["queued"] == 2
    run_worker()

    assert stages(redis, "braintree:transaction-bt_gone_back-refunded")[-1] == "no_write"
    assert stages(redis, "braintree:transaction-bt_gone-paid")[-1] == "reversed"
    assert api_calls(sandbox_state) == []
    assert sandbox_state.invoices[42]["PaidOn"] is None


def test_the_audit_takes_a_sale_refunded_in_full_for_reversed_not_never_received(
    settings: Settings,
    redis: Redis,
    sandbox_state: SandboxState,
    braintree_state: BraintreeState,
    run_worker: RunWorker,
    capsys: pytest.CaptureFixture[str],
) -> None:
    sale(braintree_state, "bt_full", "42")
    refund_record(braintree_state, "bt_full_back", "bt_full")
    sale(braintree_state, "bt_half", "44")
    refund_record(braintree_state, "bt_half_back", "bt_half", amount="50.00")
    sale(braintree_state, "bt_hooked", "43", payment_instrument_type="us_bank_account")
    deliver(settings, "braintree", braintree_paid(order_id="43", transaction_id="bt_hooked"))
    run_worker()
    refund_record(braintree_state, "bt_hooked_back", "bt_hooked", amount="1.00")
    window = argparse.Namespace(
        providers=["braintree"], since="1h", until=last().until.isoformat(), json=True
    )

    assert run_audit(settings, window) == 1
    report = json.loads(capsys.readouterr().out)
    found = {f["event"]: f for f in report["discrepancies"]}
    # Refunded in full before anything reached us: nothing to apply, nothing to do.
    assert report["counts"]["reversed"] == 1
    assert "braintree:transaction-bt_full-paid" not in found
    # Refunded in half: 50.00 still paid, never received.
    assert found["braintree:transaction-bt_half-paid"]["status"] == "never_received"
    # Applied, and its refund never received: payhooks still counts all of it.
    hooked = found["braintree:transaction-bt_hooked_back-refunded"]
    assert hooked["status"] == "never_received"
    assert "payhooks still counts braintree:transaction-bt_hooked-paid" in hooked["why"]

    reconcile_providers(settings, redis, last(), ["braintree"])
    run_worker()  # bt_hooked_back's job fails PaymentReversed: the person's turn
    assert run_audit(settings, window) == 0
    after = json.loads(capsys.readouterr().out)
    assert {k: v for k, v in after["counts"].items() if v} == {
        "reversed": 1,  # bt_full
        "partial": 1,  # bt_half: 50.00 counted, 50.00 due
        "applied": 1,  # bt_hooked (its refund's job failed PaymentReversed, for a person)
    }


def test_a_notified_settlement_of_a_refund_is_that_refund_never_a_payment(
    settings: Settings,
) -> None:
    """An ACH refund is a credit; a ``transaction_settled`` naming it must not pay."""
    xml = braintree_samples.transaction_notification(
        "transaction_settled", order_id="42", amount=Decimal("25.00"), transaction_id="bt_cr"
    ).replace(
        "<type>sale</type>",
        "<type>credit</type><refunded-transaction-id>bt_sale</refunded-transaction-id>",
    )
    body, _ = braintree_samples.signed(xml, BRAINTREE_PUBLIC, BRAINTREE_PRIVATE)
    [event] = BraintreeWebhook.from_settings(settings).normalise(body, FORM)
    assert isinstance(event, PaymentEvent)
    assert (event.key, event.kind, event.token, event.amount) == (
        "braintree:transaction-bt_cr-refunded",
        PaymentKind.REFUNDED,
        "bt_sale",
        Decimal("25.00"),
    )
    detached = xml.replace("<refunded-transaction-id>bt_sale</refunded-transaction-id>", "")
    body, _ = braintree_samples.signed(detached, BRAINTREE_PUBLIC, BRAINTREE_PRIVATE)
    [ignored] = BraintreeWebhook.from_settings(settings).normalise(body, FORM)
    assert isinstance(ignored, Ignored)


def test_a_scan_cursor_of_the_release_before_resumes_in_its_own_search(
    settings: Settings, sandbox: Any, braintree_state: BraintreeState
) -> None:
    for n in range(3):
        sale(braintree_state, f"bt{n}", "42")
    lister = BraintreeLister.from_settings(settings)
    # The release before numbered its searches 0 (submitted) and 1 (settled).
    page = lister.fetch(last(), json.dumps({"phase": 0, "at": 1, "last": "bt1"}), thorough=True)
    assert [json.loads(r)["id"] for r in page.records] == ["bt0"]
    assert json.loads(page.cursor) == {"phase": "settled"}
    done = lister.fetch(last(), json.dumps({"phase": 2}), thorough=True)
    assert (done.records, done.more) == ((), False)


def refund_failed(refund_id: str, sale_id: str, amount: str) -> bytes:
    """Braintree's ``refund_failed`` notification, as the SDK's sample has it
    (webhook_testing_gateway.py, ``__refund_failed_sample_xml``: the refund's own id, its
    amount, ``processor_declined``), naming its sale as a refund does."""
    timestamp = datetime.now(tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    xml = f"""<notification>
        <timestamp type="datetime">{timestamp}</timestamp>
        <kind>refund_failed</kind>
        <subject>
            <transaction>
            <id>{refund_id}</id>
            <type>credit</type>
            <amount>{amount}</amount>
            <currency-iso-code>EUR</currency-iso-code>
            <status>processor_declined</status>
            <refunded-transaction-id>{sale_id}</refunded-transaction-id>
            </transaction>
        </subject>
    </notification>"""
    return braintree_samples.signed(xml, BRAINTREE_PUBLIC, BRAINTREE_PRIVATE)[0]


def test_a_refund_that_failed_no_longer_counts_and_its_payment_is_applied(
    settings: Settings,
    redis: Redis,
    sandbox_state: SandboxState,
    braintree_state: BraintreeState,
    run_worker: RunWorker,
) -> None:
    """A refund counted once submitted, then declined: Braintree's ``refund_failed`` (or a
    scan finding the credit declined: one event) undoes it, and the payment it held back is
    queued again and applied."""
    sale(braintree_state, "bt_kept", "42")
    credit = refund_record(braintree_state, "bt_kept_back", "bt_kept")
    reconcile_providers(settings, redis, last(), ["braintree"])
    run_worker()
    assert stages(redis, "braintree:transaction-bt_kept-paid")[-1] == "reversed"
    assert sandbox_state.invoices[42]["PaidOn"] is None

    deliver(settings, "braintree", refund_failed("bt_kept_back", "bt_kept", "100.00"))
    run_worker()
    assert stages(redis, "braintree:transaction-bt_kept_back-reinstated")[-1] == "no_write"
    assert stages(redis, "braintree:transaction-bt_kept-paid")[-1] == "applied"
    assert sandbox_state.invoices[42]["PaidOn"] is not None

    credit.update(status="processor_declined")
    [row] = reconcile_providers(settings, redis, last(2), ["braintree"])
    assert (row["queued"], row["seen"]) == (0, 3)  # the declined refund: the webhook's event


def test_the_sdks_own_refund_failed_sample_undoes_its_refund(
    settings: Settings,
    redis: Redis,
    sandbox_state: SandboxState,
    braintree_state: BraintreeState,
    run_worker: RunWorker,
) -> None:
    """The SDK's ``refund_failed`` sample (webhook_testing_gateway.py) names the refunded
    sale by ``refunded-transaction-fk`` and states no type: read as naming no sale, it was
    ignored, and the payment its refund held back was never applied."""
    sale(braintree_state, "1", "42")  # the sample's refunded-transaction-fk
    refund_record(braintree_state, "bt_kept_back", "1")
    reconcile_providers(settings, redis, last(), ["braintree"])
    run_worker()
    assert stages(redis, "braintree:transaction-1-paid")[-1] == "reversed"

    deliver(settings, "braintree", braintree_sdk_sample("refund_failed", "bt_kept_back"))
    run_worker()
    assert stages(redis, "braintree:transaction-bt_kept_back-reinstated")[-1] == "no_write"
    assert stages(redis, "braintree:transaction-1-paid")[-1] == "applied"
    assert sandbox_state.invoices[42]["PaidOn"] is not None
