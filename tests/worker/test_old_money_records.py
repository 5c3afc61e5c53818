"""The money path's records written by the release before issue 21's third pass (main
8cd8f52) keep their meaning for this version: a payment's token marker, its binding to an
invoice, the invoice's ledger and a partial refund's reversal records, as that release's own
code wrote them (tests/fixtures/records_8cd8f52/capture.py, run with that commit).

They are kept 400 days, so a redelivery, a replay or a second payment arriving after an
upgrade must be judged by them: never a second token, never a second payer unnoticed.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest
from redis import Redis

from payhooks.devtools.sandbox.nexudus import SandboxState, invoice_record
from payhooks.providers.stripe import sample as samples
from payhooks.storage.trail import Trail
from tests.ops.test_old_records import restore
from tests.support.delivery import api_calls, deliver, outcome_of
from workers.invoice_ledger import InvoiceLedger

APPLIED, REFUNDED = 4202, 4203


@pytest.fixture
def release_records(redis: Redis, sandbox_state: SandboxState) -> list[dict[str, Any]]:
    """Redis as 8cd8f52 left it, and Nexudus as that release's worker left it: both
    invoices paid with the payment's token."""
    for invoice_id, intent, token_id in (
        (APPLIED, "pi_8cd8f52_applied", 900001),
        (REFUNDED, "pi_8cd8f52_refunded", 900002),
    ):
        record = invoice_record(invoice_id)
        record["PaidOn"] = "2026-12-07T01:48:15Z"
        record["Paid"] = True
        sandbox_state.invoices[invoice_id] = record
        sandbox_state.tokens[token_id] = {
            "Id": token_id,
            "CoworkerInvoiceId": invoice_id,
            "PaymentToken": intent,
            "PaymentProvider": "Stripe",
        }
    records = restore(redis, "8cd8f52")
    # Its queued events (invoice 4201) are tests/ops/test_old_records.py's business.
    redis.delete("rq:queue:payhooks")
    return records


def paid(intent_id: str, invoice_id: int, event_id: str) -> dict[str, Any]:
    intent = samples.payment_intent(
        invoice_id=invoice_id, amount=Decimal("100.00"), intent_id=intent_id
    )
    return samples.event("payment_intent.succeeded", intent, event_id=event_id)


@pytest.mark.usefixtures("release_records")
def test_a_payment_applied_by_the_release_before_is_not_applied_again(
    settings: Any, redis: Redis, sandbox_state: SandboxState, run_worker: Callable[[], None]
) -> None:
    # Another event of the same payment (Stripe sends several per payment).
    deliver(settings, "stripe", paid("pi_8cd8f52_applied", APPLIED, "evt_after_upgrade"))
    run_worker()
    assert outcome_of(redis, "stripe:evt_after_upgrade") == "already_applied"
    assert api_calls(sandbox_state) == [], "its markers say settled: no Nexudus call"


@pytest.mark.usefixtures("release_records")
def test_a_payment_bound_by_the_release_before_cannot_pay_another_invoice(
    settings: Any, redis: Redis, sandbox_state: SandboxState, run_worker: Callable[[], None]
) -> None:
    sandbox_state.invoices[4209] = invoice_record(4209)
    deliver(settings, "stripe", paid("pi_8cd8f52_applied", 4209, "evt_other_invoice"))
    run_worker()
    assert sandbox_state.invoices[4209]["PaidOn"] is None
    assert not [c for c in api_calls(sandbox_state) if c[0] != "GET"], "nothing written"


@pytest.mark.usefixtures("release_records")
def test_the_ledger_and_refund_of_the_release_before_still_count(
    settings: Any, redis: Redis, sandbox_state: SandboxState, run_worker: Callable[[], None]
) -> None:
    ledger = InvoiceLedger(redis)
    [applied] = ledger.applied(APPLIED).values()
    assert (applied.amount, applied.currency) == (Decimal("100.00"), "EUR")
    [refunded] = ledger.applied(REFUNDED).values()
    assert (refunded.amount, refunded.reversed) == (Decimal("70.00"), Decimal("30.00"))
    # A second payer of the paid invoice is a double payment, held for a person, who is
    # told which payment the ledger says paid it; the invoice is not written again.
    deliver(settings, "stripe", paid("pi_second_payer", APPLIED, "evt_second_payer"))
    run_worker()
    assert outcome_of(redis, "stripe:evt_second_payer") == "failed"
    [held] = [
        e
        for e in Trail(redis, ttl_seconds=60).history("stripe:evt_second_payer")
        if e["stage"] == "failed"
    ]
    assert "by pi_8cd8f52_applied" in held["reason"], held
    assert not [c for c in api_calls(sandbox_state) if c[0] == "PUT"], "PaidOn not written"
