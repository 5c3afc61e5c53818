"""Braintree reconciliation: `payhooks reconcile braintree` searches the stand-in's
transactions through the official SDK (advanced_search_ids, then advanced_search), and a
real RQ worker applies what no webhook brought to the Nexudus sandbox.

Fixtures: the stand-in's transactions are shaped like the SDK's own ``transaction_settled``
sample (braintree-python's webhook_testing_gateway.py), with a status history; the webhook
is the SDK-signed notification of tests/support/provider_payloads.py.
"""

from __future__ import annotations

from typing import Any

from redis import Redis
from rq import Queue

from payhooks.cli.reconcile import reconcile_providers
from payhooks.devtools.sandbox.nexudus import SandboxState
from payhooks.domain.events import PaymentEvent
from payhooks.providers.braintree.lister import BraintreeLister
from payhooks.providers.braintree.receiver import BraintreeWebhook
from payhooks.providers.braintree.stand_in import (
    BraintreeState,
    refund_record,
)
from payhooks.settings import Settings
from tests.support.braintree_searches import FORM, last, sale, stages
from tests.support.delivery import api_calls, deliver
from tests.support.processes import RunWorker
from tests.support.provider_payloads import braintree_paid


def test_a_listed_transaction_is_the_event_its_webhook_gives(
    settings: Settings, sandbox: Any, braintree_state: BraintreeState
) -> None:
    sale(braintree_state, "bt_same", "43", payment_instrument_type="us_bank_account")
    [webhook] = BraintreeWebhook.from_settings(settings).normalise(
        braintree_paid(order_id="43", transaction_id="bt_same"), FORM
    )
    lister = BraintreeLister.from_settings(settings)
    refunds = lister.fetch(last(), None, thorough=True)  # the first search: no refund
    assert (refunds.records, refunds.more) == ((), True)
    page = lister.fetch(last(), refunds.cursor, thorough=True)
    [listed] = lister.normalise(page.records[0])
    assert isinstance(webhook, PaymentEvent)
    assert isinstance(listed, PaymentEvent)
    assert listed.key == webhook.key == "braintree:transaction-bt_same-paid"
    same = ("kind", "token", "invoice", "amount", "currency", "object_id", "event_type")
    assert {f: getattr(listed, f) for f in same} == {f: getattr(webhook, f) for f in same}
    # The SDK's own calls: the ids matching the search, then the transactions by id.
    assert braintree_state.requests == [
        "advanced_search_ids",  # refunds: none
        "advanced_search_ids",
        "advanced_search_ids",
        "advanced_search 1",
    ]


def test_a_missed_payment_is_recovered_and_one_seen_by_webhook_is_not_queued_twice(
    settings: Settings,
    redis: Redis,
    sandbox_state: SandboxState,
    braintree_state: BraintreeState,
    run_worker: RunWorker,
    queue: Queue,
) -> None:
    sale(braintree_state, "bt_missed", "42")  # a card sale: Braintree notifies no one
    sale(braintree_state, "bt_seen", "43", payment_instrument_type="us_bank_account")
    pending = sale(braintree_state, "bt_pending", "44", payment_instrument_type="us_bank_account")
    pending.update(status="settling", history=pending["history"][:-1])
    sale(braintree_state, "bt_refunded", "44")
    refund_record(braintree_state, "bt_refund", "bt_refunded")
    deliver(settings, "braintree", braintree_paid(order_id="43", transaction_id="bt_seen"))
    run_worker()
    assert sandbox_state.invoices[43]["PaidOn"] is not None
    calls_before = len(api_calls(sandbox_state))

    [row] = reconcile_providers(settings, redis, last(), ["braintree"])

    # The sales are found by both searches (submitted, then settled): one event each; the
    # refund (a credit) by the first search, of refunds, so its job runs first.
    assert {k: row[k] for k in ("queued", "seen", "ignored", "result")} == {
        "queued": 3,
        "seen": 4,
        "ignored": 1,  # the ACH sale still settling (paid once settled)
        "result": "ok",
    }
    run_worker()
    assert sandbox_state.invoices[42]["PaidOn"] is not None
    assert sandbox_state.invoices[44]["PaidOn"] is None
    # The sale refunded in full is recovered, and finds nothing left to apply.
    assert stages(redis, "braintree:transaction-bt_refunded-paid")[-1] == "reversed"
    assert stages(redis, "braintree:transaction-bt_refund-refunded")[-1] == "no_write"
    [token] = [t for t in sandbox_state.tokens.values() if t["Token"] == "bt_missed"]
    assert token["RegularPaymentProvider"] == 8
    assert stages(redis, "braintree:transaction-bt_missed-paid")[:2] == ["polled", "enqueued"]
    assert stages(redis, "braintree:transaction-bt_missed-paid")[-1] == "applied"
    # The webhook's payment: its one job, no entry from the scan, no second Nexudus call.
    seen = stages(redis, "braintree:transaction-bt_seen-paid")
    assert seen[:2] == ["received", "enqueued"]
    assert "duplicate" not in seen
    assert api_calls(sandbox_state)[calls_before:] == [
        ("GET", "/api/billing/coworkerinvoices/42", 200),
        ("POST", "/api/billing/coworkerinvoicepaymenttokens", 200),
        ("PUT", "/api/billing/coworkerinvoices", 200),
    ]

    again = reconcile_providers(settings, redis, last(), ["braintree"])
    assert (again[0]["queued"], again[0]["seen"]) == (0, 7)
    assert queue.count == 0


def test_pages_of_a_search_and_a_failure_mid_scan_resume_after_429s(
    settings: Settings, redis: Redis, braintree_state: BraintreeState
) -> None:
    for n in range(120):  # three pages of 50 in each search
        sale(braintree_state, f"bt{n:03d}", str(42 + n % 3))
    window = last()
    # The refunds' search (none), then the sales': two pages (each an ids search and a
    # fetch), then the third page fails.
    braintree_state.faults = [200, 200, 200, 200, 200, 200, 503]
    [first] = reconcile_providers(settings, redis, window, ["braintree"])
    assert first["result"].startswith("unavailable: Braintree's transaction search")
    assert first["queued"] == 100
    braintree_state.requests.clear()

    braintree_state.faults = [429, 429]
    [rest] = reconcile_providers(settings, redis, window, ["braintree"], sleep=lambda s: None)
    assert rest["result"] == "ok"
    assert (rest["queued"], rest["seen"]) == (20, 120)  # then the settled search: all seen
    fetched = [r for r in braintree_state.requests if r.startswith("advanced_search ")]
    assert fetched == ["advanced_search 20"] + ["advanced_search 50"] * 2 + ["advanced_search 20"]
    assert not list(redis.scan_iter(match="payhooks:reconcile:*"))


def test_a_search_at_braintrees_limit_is_refused_not_read_in_part(
    settings: Settings, redis: Redis, braintree_state: BraintreeState
) -> None:
    for n in range(10_000):
        sale(braintree_state, f"bt{n:05d}", "42")
    [row] = reconcile_providers(settings, redis, last(), ["braintree"])
    assert row["result"].startswith("refused: Braintree's search of sales by submitted")
    assert "reconcile shorter windows" in row["result"]
    assert row["queued"] == 0
