"""Dates nobody should believe never become PaidOn (issue 17, point 11).

A provider's date that cannot be read used to fall back to 1970-01-01 as the invoice's
PaidOn. Every provider's date now goes through the one rule Forte had
(payhooks/domain/paid_dates.py): of this century and at most a day ahead of our clock,
else the time payhooks received the webhook stands in. Real RQ workers, the Nexudus
sandbox over HTTP, the provider stand-ins.

Payloads: the PayPal IPN sample (payhooks/devtools/samples/paypal.py, fields per PayPal's
IPN variables reference) and GoCardless's payment event
(payhooks/devtools/samples/gocardless.py, shaped like GoCardless's documented events),
each with its date field made unreadable or implausible.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from payhooks.devtools.sandbox.nexudus import SandboxState
from payhooks.domain.paid_dates import paid_date
from payhooks.providers.gocardless import sample as gocardless_samples
from payhooks.providers.gocardless.stand_in import GoCardlessState, payment_record
from payhooks.providers.paypal import sample as paypal_samples
from payhooks.settings import Settings
from tests.support.delivery import deliver
from tests.support.processes import RunWorker

NOW = datetime(2026, 11, 20, 9, 30, tzinfo=UTC)


@pytest.mark.parametrize(
    "stated",
    [
        datetime(1970, 1, 1, tzinfo=UTC),  # our normalisers' "could not read it"
        datetime(1, 1, 1, tzinfo=UTC),  # .NET's "no date"
        NOW + timedelta(days=2),
        datetime(2107, 1, 1, tzinfo=UTC),
    ],
)
def test_an_implausible_date_gives_way(stated: datetime) -> None:
    received = NOW - timedelta(minutes=5)
    assert paid_date(stated, received, now=NOW) == received
    assert paid_date(stated, now=NOW) == NOW


def test_a_plausible_date_stands_naive_read_as_utc() -> None:
    assert paid_date(NOW - timedelta(days=400), now=NOW) == NOW - timedelta(days=400)
    assert paid_date(NOW + timedelta(hours=20), now=NOW) == NOW + timedelta(hours=20)
    assert paid_date(datetime(2026, 11, 19, 8), now=NOW) == datetime(2026, 11, 19, 8, tzinfo=UTC)


def paid_on(state: SandboxState, invoice_id: int) -> datetime:
    value = state.invoices[invoice_id]["PaidOn"]
    assert value is not None
    return datetime.strptime(str(value), "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)


def around_now(started: datetime, when: datetime) -> bool:
    # PaidOn is written to the second: allow for the truncation.
    return started - timedelta(seconds=1) <= when <= datetime.now(tz=UTC)


@pytest.mark.parametrize("payment_date", ["", "sometime last week", "10:14:20 Feb 30, 2026 PST"])
def test_paypal_ipn_without_a_readable_payment_date(
    settings: Settings,
    sandbox_state: SandboxState,
    run_worker: RunWorker,
    payment_date: str,
) -> None:
    started = datetime.now(tz=UTC)
    body = paypal_samples.ipn(
        invoice="42", amount=Decimal(100), txn_id="TXNDATE", payment_date=payment_date
    )
    deliver(settings, "paypal-ipn", body)
    run_worker()
    assert around_now(started, paid_on(sandbox_state, 42)), sandbox_state.invoices[42]["PaidOn"]


@pytest.mark.parametrize(
    "created_at", ["not a date", "2026-13-45T25:61:00Z", "2199-01-01T00:00:00Z"]
)
def test_gocardless_without_a_believable_created_at(
    settings: Settings,
    sandbox_state: SandboxState,
    gocardless_state: GoCardlessState,
    run_worker: RunWorker,
    created_at: str,
) -> None:
    started = datetime.now(tz=UTC)
    payment = gocardless_samples.payment_id()
    gocardless_state.payments[payment] = payment_record(
        payment, amount_minor=10000, currency="EUR", invoice_id=42
    )
    event = {**gocardless_samples.payment_event(payment, "confirmed"), "created_at": created_at}
    deliver(settings, "gocardless", {"events": [event]})
    run_worker()
    assert around_now(started, paid_on(sandbox_state, 42)), sandbox_state.invoices[42]["PaidOn"]
