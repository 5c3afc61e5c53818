"""A job's event, as its hash holds it (payhooks/storage/jobs.py): since issue 21's fourth
pass the event's short values are one field, and the object is left out when it is the
token; jobs queued before hold a field per value. Both read back as the same event."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from payhooks.domain.events import InvoiceRef, PaymentEvent, PaymentKind, RegularPaymentProvider
from payhooks.storage.jobs import event_fields, event_from_fields
from tests.support.paths import FIXTURES

WHOLE = PaymentEvent(
    provider="stripe",
    event_id="evt_1",
    event_type="charge.refunded",
    kind=PaymentKind.REFUNDED,
    token="pi_1",
    invoice=InvoiceRef(invoice_id=4201, number="INV-0007"),
    amount=Decimal("30.00"),
    currency="EUR",
    occurred_at=datetime(2026, 12, 7, 1, 48, 22, tzinfo=UTC),
    object_id="ch_1",
    regular_payment_provider=RegularPaymentProvider.STRIPE,
    payment_method="card",
    details={"livemode": "true", "refunds_of": "ch_1"},
)
BARE = PaymentEvent(
    provider="generic",
    event_id="e-2",
    event_type="payment.pending",
    kind=PaymentKind.PENDING,
    token="t-2",
    invoice=InvoiceRef(),
    amount=None,
    currency=None,
    occurred_at=datetime(2026, 12, 7, 1, 48, 22, 123456, tzinfo=UTC),
    object_id="t-2",
)


@pytest.mark.parametrize("event", [WHOLE, BARE], ids=["every value", "no optional value"])
def test_every_value_of_an_event_reads_back_from_its_job(event: PaymentEvent) -> None:
    fields = event_fields(event)
    assert event_from_fields({k.encode(): v.encode() for k, v in fields.items()}) == event
    # A compact hash holds values of at most 64 bytes.
    assert max(len(v.encode()) for v in fields.values()) <= 64


def test_the_object_is_left_out_when_it_is_the_token() -> None:
    assert "e.object" in event_fields(WHOLE)
    assert "e.object" not in event_fields(BARE)


def test_a_job_queued_before_the_fourth_pass_reads_as_it_did() -> None:
    """The refund's job as main 8cd8f52 wrote it (tests/fixtures/records_8cd8f52): a field
    per value, the object always."""
    records = json.loads((FIXTURES / "records_8cd8f52" / "records.json").read_text())["records"]
    [job] = [r for r in records if r["key"].startswith("rq:job:stripe-evt_8cd8f52_refund")]
    old = {k.encode(): base64.b64decode(v) for k, v in job["value"].items()}
    event = event_from_fields(old)
    assert event is not None
    assert (event.kind, event.amount, event.currency, event.object_id) == (
        PaymentKind.REFUNDED,
        Decimal("30.00"),
        "EUR",
        "re_8cd8f52_refunded",
    )
    assert (event.token, event.invoice, event.regular_payment_provider) == (
        "pi_8cd8f52_refunded",
        InvoiceRef(),
        None,
    )
    # Written again as this release writes it, the same event.
    again = {k.encode(): v.encode() for k, v in event_fields(event).items()}
    assert event_from_fields(again) == event
