"""Authorize.Net reconciliation: `payhooks reconcile authorizenet` reads the stand-in's
unsettled transactions and settled batches over its JSON API, and a real RQ worker applies
what no webhook brought to the Nexudus sandbox.

Fixtures: tests/fixtures/authorizenet_list_examples.json, the sample responses of
Authorize.Net's API reference for getUnsettledTransactionList, getSettledBatchList and
getTransactionList (as reproduced in stymiee/authnetjson's examples; the file says so).
"""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from redis import Redis
from rq import Queue

from payhooks.cli.audit import run_audit
from payhooks.cli.reconcile import reconcile_providers
from payhooks.devtools.sandbox.nexudus import INVOICES, Fault, SandboxState
from payhooks.domain.events import Ignored, InvoiceRef, PaymentEvent, PaymentKind
from payhooks.providers.authorizenet import sample as samples
from payhooks.providers.authorizenet.lister import AuthorizeNetLister
from payhooks.providers.authorizenet.settings import AuthorizeNetSettings
from payhooks.providers.authorizenet.stand_in import (
    AuthorizeNetState,
    return_item,
    settle,
    transaction_record,
)
from payhooks.providers.braintree.stand_in import BraintreeState
from payhooks.providers.kit.listing import Window
from payhooks.settings import Settings
from payhooks.storage import redis_keys
from payhooks.storage.trail import Trail
from tests.support.delivery import api_calls, deliver
from tests.support.paths import FIXTURES
from tests.support.processes import RunWorker, run_burst_worker
from tests.support.settings import AUTHORIZENET_KEY, with_section, with_settings

EXAMPLES = json.loads((FIXTURES / "authorizenet_list_examples.json").read_text())
#: The Nexudus calls that pay invoice 42, and nothing else.
PAYING_42 = [
    ("GET", "/api/billing/coworkerinvoices/42", 200),
    ("POST", "/api/billing/coworkerinvoicepaymenttokens", 200),
    ("PUT", "/api/billing/coworkerinvoices", 200),
]


def last(days: float = 1) -> Window:
    now = datetime.now(tz=UTC).replace(microsecond=0)
    return Window(now - timedelta(days=days), now + timedelta(seconds=5))


def captured(
    state: AuthorizeNetState, transaction_id: str, invoice: str, **kw: Any
) -> dict[str, Any]:
    record = transaction_record(transaction_id, invoice_number=invoice, amount="100.00", **kw)
    state.transactions[transaction_id] = record
    return record


def _notified(
    settings: Settings, state: AuthorizeNetState, transaction_id: str, invoice: str
) -> None:
    """A payment of ``invoice`` captured, and its notification delivered (not yet run)."""
    captured(state, transaction_id, invoice)
    sent = samples.signed(samples.notification(transaction_id), AUTHORIZENET_KEY)
    deliver(settings, "authorizenet", sent)


def stages(redis: Redis, event_key: str) -> list[str]:
    return [str(e["stage"]) for e in Trail(redis, ttl_seconds=60).history(event_key)]


def test_the_published_examples_read_as_their_notifications(settings: Settings) -> None:
    lister = AuthorizeNetLister.from_settings(settings)
    [settled] = EXAMPLES["getTransactionListResponse"]["transactions"]
    [event] = lister.normalise(json.dumps(settled).encode())
    assert isinstance(event, PaymentEvent)
    assert (event.key, event.event_type, event.kind, event.token) == (
        "authorizenet:transaction-2162566217-paid",
        "net.authorize.payment.authcapture.created",
        PaymentKind.PAID,
        "2162566217",
    )
    assert event.invoice == InvoiceRef(invoice_id=60)
    assert event.amount is None  # as the notification's: the job reads it back
    # Authorised, not captured: no money yet, and no notification payhooks acts on.
    for pending in EXAMPLES["getUnsettledTransactionListResponse"]["transactions"]:
        [ignored] = lister.normalise(json.dumps(pending).encode())
        assert isinstance(ignored, Ignored)


def test_the_stand_in_lists_as_the_api_reference_shows(
    sandbox: Any, authorizenet_state: AuthorizeNetState
) -> None:
    import httpx

    captured(authorizenet_state, "7101", "42")
    settle(authorizenet_state, "B7", ["7101"])
    auth = {"name": "sandbox_login", "transactionKey": "sandbox_transaction_key"}
    now = datetime.now(tz=UTC)

    def ask(request: str, **fields: Any) -> dict[str, Any]:
        answer = httpx.post(
            f"{sandbox.url}/xml/v1/request.api",
            json={request: {"merchantAuthentication": auth, **fields}},
        )
        assert answer.content.startswith(b"\xef\xbb\xbf")  # the API's byte-order mark
        body: dict[str, Any] = json.loads(answer.content.decode("utf-8-sig"))
        return body

    batches = ask(
        "getSettledBatchListRequest",
        firstSettlementDate=(now - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ"),
        lastSettlementDate=(now + timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M:%SZ"),
    )
    published = EXAMPLES["getSettledBatchListResponse"]["batchList"][0]
    assert set(batches["batchList"][0]) <= set(published)
    listed = ask("getTransactionListRequest", batchId="B7")
    assert set(listed["transactions"][0]) == set(
        EXAMPLES["getTransactionListResponse"]["transactions"][0]
    )
    assert listed["messages"] == EXAMPLES["getTransactionListResponse"]["messages"]
    too_long = ask(
        "getSettledBatchListRequest",
        firstSettlementDate="2026-01-01T00:00:00Z",
        lastSettlementDate="2026-02-02T00:00:00Z",
    )
    assert too_long["messages"]["resultCode"] == "Error"


def test_a_missed_payment_is_recovered_and_one_seen_by_webhook_makes_no_second_write(
    settings: Settings,
    redis: Redis,
    sandbox_state: SandboxState,
    authorizenet_state: AuthorizeNetState,
    run_worker: RunWorker,
    queue: Queue,
) -> None:
    for invoice_id in (42, 43):
        sandbox_state.invoices[invoice_id]["CurrencyCode"] = "USD"
    captured(authorizenet_state, "7001", "42")  # its notification never came
    captured(authorizenet_state, "7002", "43")
    seen = samples.notification("7002")
    deliver(settings, "authorizenet", samples.signed(seen, AUTHORIZENET_KEY))
    run_worker()
    assert sandbox_state.invoices[43]["PaidOn"] is not None
    settle(authorizenet_state, "B1", ["7002"])  # settled tonight; 7001 is not yet
    calls_before = len(api_calls(sandbox_state))

    [row] = reconcile_providers(settings, redis, last(), ["authorizenet"])

    # The webhook's key is its notificationId, which no list gives back: 7002 is queued
    # again under its transaction, and its job writes nothing (below).
    assert {k: row[k] for k in ("scanned", "queued", "seen", "result")} == {
        "scanned": 2,
        "queued": 2,
        "seen": 0,
        "result": "ok",
    }
    run_worker()
    assert len(queue.failed_job_registry) == 0
    assert sandbox_state.invoices[42]["PaidOn"] is not None
    [token] = [t for t in sandbox_state.tokens.values() if t["Token"] == "7001"]
    assert token["RegularPaymentProvider"] == 4
    assert stages(redis, "authorizenet:transaction-7001-paid")[-1] == "applied"
    # One payment, one Nexudus write: the invoice's marker for (authorizenet, 7002) says
    # it is applied, so its listed event makes no Nexudus call at all.
    assert api_calls(sandbox_state)[calls_before:] == PAYING_42
    assert [t["Token"] for t in sandbox_state.tokens.values()].count("7002") == 1
    assert stages(redis, "authorizenet:transaction-7002-paid") == [
        "polled",
        "enqueued",
        "already_applied",
    ]

    again = reconcile_providers(settings, redis, last(), ["authorizenet"])
    assert (again[0]["queued"], again[0]["seen"]) == (0, 2)
    assert queue.count == 0


def _many(state: AuthorizeNetState, prefix: str, count: int, captured_at: set[int]) -> list[str]:
    """``count`` transactions submitted a second apart, declined but at ``captured_at``."""
    start = datetime.now(tz=UTC) - timedelta(hours=2)
    ids = []
    for n in range(count):
        transaction_id = f"{prefix}{n:05d}"
        status = "capturedPendingSettlement" if n in captured_at else "declined"
        captured(
            state,
            transaction_id,
            "42",
            status=status,
            submitted=start + timedelta(seconds=n),
        )
        ids.append(transaction_id)
    return ids


def test_pages_and_batches_across_parts_and_a_failure_mid_scan_resume(
    settings: Settings, redis: Redis, authorizenet_state: AuthorizeNetState
) -> None:
    state = authorizenet_state
    now = datetime.now(tz=UTC)
    # Unsettled: two pages of 1000, a payment on each. Batch B1 (35 days ago, the
    # window's first 30-day part): two pages, a payment either side of the page break.
    # Batch B2 (an hour ago, the second part): one payment.
    _many(state, "U", 1001, {0, 1000})
    settle(state, "B1", _many(state, "S", 1001, {999, 1000}), at=now - timedelta(days=35))
    settle(state, "B2", _many(state, "T", 1, {0}), at=now - timedelta(hours=1))
    window = last(days=40)
    # Unsettled pages 1 and 2, B1's batch list, B1 page 1, then B1 page 2 fails.
    state.faults = [200, 200, 200, 200, 503]
    [first] = reconcile_providers(settings, redis, window, ["authorizenet"])
    assert first["result"].startswith("unavailable: Authorize.Net API answered 503")
    assert first["queued"] == 3
    state.requests.clear()

    state.faults = [200, 429]  # the batch list again, then B1 page 2 waited for
    [rest] = reconcile_providers(settings, redis, window, ["authorizenet"], sleep=lambda s: None)
    assert rest["result"] == "ok"
    assert rest["queued"] == 2
    assert state.requests == [
        "getSettledBatchListRequest",
        "getTransactionListRequest B1 2",
        "getTransactionListRequest B1 2",
        "getSettledBatchListRequest",
        "getTransactionListRequest B2 1",
    ]
    assert not list(redis.scan_iter(match="payhooks:reconcile:*"))


@pytest.mark.parametrize(
    ("change", "answer"),
    [
        ({"transaction_key": "wrong"}, "refused: Authorize.Net refused getUnsettled"),
        ({"login_id": None}, "skipped: AUTHORIZENET_LOGIN_ID and AUTHORIZENET_TRANSACTION_KEY"),
    ],
)
def test_credentials_refused_or_missing_say_so_without_the_key(
    settings: Settings, redis: Redis, change: dict[str, Any], answer: str
) -> None:
    changed = with_section(settings, AuthorizeNetSettings, **change)
    [row] = reconcile_providers(changed, redis, last(), ["authorizenet"])
    assert row["result"].startswith(answer)
    assert "wrong" not in row["result"]
    assert "sandbox_transaction_key" not in row["result"]


def test_the_readme_walk_through_recovers_a_payment_from_each(
    settings: Settings,
    redis: Redis,
    sandbox: Any,
    sandbox_state: SandboxState,
    braintree_state: BraintreeState,
    run_worker: RunWorker,
) -> None:
    """The README's `payhooks dev` steps for Braintree and Authorize.Net, over HTTP."""
    import httpx

    sandbox_state.invoices[44]["CurrencyCode"] = "USD"  # the tests' AUTHORIZENET_CURRENCY
    sale = {"id": "bt0001", "order_id": "43", "amount": "100.00", "currency": "EUR"}
    assert httpx.post(f"{sandbox.url}/_sandbox/braintree/transactions", json=sale).is_success
    transaction = {"id": "60001", "invoice_number": "44", "amount": "100.00"}
    assert httpx.post(
        f"{sandbox.url}/_sandbox/authorizenet/transactions", json=transaction
    ).is_success
    rows = reconcile_providers(settings, redis, last(), ["braintree", "authorizenet"])
    assert [(r["provider"], r["queued"], r["result"]) for r in rows] == [
        ("braintree", 1, "ok"),
        ("authorizenet", 1, "ok"),
    ]
    run_worker()
    assert sandbox_state.invoices[43]["PaidOn"] is not None
    assert sandbox_state.invoices[44]["PaidOn"] is not None
    assert stages(redis, "braintree:transaction-bt0001-paid")[-1] == "applied"

    # Then the Braintree sale is refunded in part: the invoice was paid, so it is flagged.
    refund = {"id": "bt0001r", "transaction": "bt0001", "amount": "30.00"}
    assert httpx.post(f"{sandbox.url}/_sandbox/braintree/refunds", json=refund).is_success
    [row] = reconcile_providers(settings, redis, last(), ["braintree"])
    assert (row["queued"], row["result"]) == (1, "ok")
    run_worker()
    refunded = Trail(redis, ttl_seconds=60).history("braintree:transaction-bt0001r-refunded")[-1]
    assert (refunded["stage"], refunded["error_class"]) == ("failed", "PaymentReversed")
    assert sandbox_state.invoices[43]["PaidOn"] is not None


def test_the_kept_record_names_neither_the_cardholder_nor_the_card(settings: Settings) -> None:
    [listed] = EXAMPLES["getTransactionListResponse"]["transactions"]
    kept = AuthorizeNetLister.from_settings(settings).redact(json.dumps(listed).encode())
    assert kept is not None
    assert b"Bignotti" not in kept
    assert b"XXXX4444" not in kept
    assert json.loads(kept)["transId"] == "2162566217"


def test_the_audit_finds_a_payment_its_notification_applied_applied(
    settings: Settings,
    redis: Redis,
    sandbox_state: SandboxState,
    authorizenet_state: AuthorizeNetState,
    run_worker: RunWorker,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A notification is keyed by its notificationId, which no list gives back: the
    payment it applied is on the invoice all the same, which is what the audit asks."""
    sandbox_state.invoices[43]["CurrencyCode"] = "USD"
    captured(authorizenet_state, "7003", "43")
    # A second payment of invoice 43: its token is recorded with a note, its job fails
    # (InvoiceAlreadyPaid). The token and PaidOn are there, yet it is not applied.
    captured(authorizenet_state, "7004", "43")
    for transaction in ("7003", "7004"):
        sent = samples.signed(samples.notification(transaction), AUTHORIZENET_KEY)
        deliver(settings, "authorizenet", sent)
        run_worker()
    assert sandbox_state.invoices[43]["PaidOn"] is not None
    assert [t["Token"] for t in sandbox_state.tokens.values()] == ["7003", "7004"]

    window = argparse.Namespace(
        providers=["authorizenet"], since="1d", until=last().until.isoformat(), json=True
    )
    assert run_audit(settings, window) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["counts"]["applied"] == 1
    [double] = report["discrepancies"]
    assert double["event"] == "authorizenet:transaction-7004-paid"


def _listed_as(state: AuthorizeNetState, transaction_id: str, status: str) -> None:
    """The payment's own transaction, settled, then in ``status`` (a return or chargeback
    changes it; Authorize.Net sends no notification of either)."""
    settle(state, f"B{transaction_id}", [transaction_id])
    state.transactions[transaction_id]["transactionStatus"] = status


@pytest.mark.parametrize(
    ("status", "outcomes"),
    [
        ("returnedItem", [("returned", PaymentKind.REFUNDED)]),
        ("chargeback", [("chargeback", PaymentKind.REFUNDED)]),
        # Never paid: the reversal's own transaction is no payment (see below).
        ("chargebackReversal", [("chargeback-reversed", PaymentKind.REINSTATED)]),
    ],
)
def test_money_gone_back_without_a_notification_reads_as_a_reversal_of_the_whole_payment(
    settings: Settings, status: str, outcomes: list[tuple[str, PaymentKind]]
) -> None:
    # The published list example, in each status of AnetApiSchema.xsd's
    # transactionStatusEnum that no notification tells.
    [listed] = EXAMPLES["getTransactionListResponse"]["transactions"]
    record = json.dumps({**listed, "transactionStatus": status}).encode()
    events = AuthorizeNetLister.from_settings(settings).normalise(record)
    told = [e for e in events if isinstance(e, PaymentEvent)]
    assert [(e.key, e.kind) for e in told] == [
        (f"authorizenet:transaction-2162566217-{outcome}", kind) for outcome, kind in outcomes
    ]
    for event in told:
        # The payment itself, all of it: one chargeback listed twice counts once.
        assert (event.token, event.object_id, event.amount) == ("2162566217", "2162566217", None)


def test_a_chargeback_found_by_the_scan_flags_the_payment_its_notification_applied(
    settings: Settings,
    redis: Redis,
    sandbox_state: SandboxState,
    authorizenet_state: AuthorizeNetState,
    run_worker: RunWorker,
    queue: Queue,
) -> None:
    sandbox_state.invoices[42]["CurrencyCode"] = "USD"
    _notified(settings, authorizenet_state, "7020", "42")
    run_worker()
    paid_on = sandbox_state.invoices[42]["PaidOn"]
    assert paid_on is not None
    _listed_as(authorizenet_state, "7020", "chargeback")
    calls_before = len(api_calls(sandbox_state))

    [row] = reconcile_providers(settings, redis, last(), ["authorizenet"])
    assert (row["scanned"], row["queued"], row["result"]) == (1, 1, "ok")
    run_worker()

    # Flagged for a person; the invoice is never un-paid behind the operator's back.
    flagged = Trail(redis, ttl_seconds=60).history("authorizenet:transaction-7020-chargeback")[-1]
    assert (flagged["stage"], flagged["error_class"]) == ("failed", "PaymentReversed")
    assert sandbox_state.invoices[42]["PaidOn"] == paid_on
    assert [c for c in api_calls(sandbox_state)[calls_before:] if c[0] != "GET"] == []
    again = reconcile_providers(settings, redis, last(), ["authorizenet"])
    assert (again[0]["queued"], again[0]["seen"]) == (0, 1)

    # Then the merchant wins it back: the chargeback no longer counts, nothing is written
    # (the payment is applied already), and the flag is said to be moot.
    authorizenet_state.transactions["7020"]["transactionStatus"] = "chargebackReversal"
    [won] = reconcile_providers(settings, redis, last(), ["authorizenet"])
    assert (won["queued"], won["result"]) == (1, "ok")
    failed_before = len(queue.failed_job_registry)
    run_worker()
    assert len(queue.failed_job_registry) == failed_before
    [reinstated] = Trail(redis, ttl_seconds=60).history(
        "authorizenet:transaction-7020-chargeback-reversed"
    )[-1:]
    assert reinstated["stage"] == "no_write"
    assert "moot" in str(reinstated["note"])
    assert [c for c in api_calls(sandbox_state)[calls_before:] if c[0] != "GET"] == []


def test_a_payment_won_back_is_applied_by_its_notification_not_by_the_scan(
    settings: Settings,
    redis: Redis,
    sandbox_state: SandboxState,
    authorizenet_state: AuthorizeNetState,
    run_worker: RunWorker,
    queue: Queue,
) -> None:
    """A transaction listed as chargebackReversal is never told as paid (it may be the
    reversal's own transaction); a payment's own notification in that status is."""
    sandbox_state.invoices[44]["CurrencyCode"] = "USD"
    captured(authorizenet_state, "7022", "44")
    _listed_as(authorizenet_state, "7022", "chargebackReversal")

    [row] = reconcile_providers(settings, redis, last(), ["authorizenet"])
    assert (row["queued"], row["result"]) == (1, "ok")
    run_worker()
    assert sandbox_state.invoices[44]["PaidOn"] is None
    deliver(
        settings, "authorizenet", samples.signed(samples.notification("7022"), AUTHORIZENET_KEY)
    )
    run_worker()
    assert len(queue.failed_job_registry) == 0
    assert sandbox_state.invoices[44]["PaidOn"] is not None


@pytest.mark.parametrize("scan_first", [True, False], ids=["scan-first", "payment-job-first"])
@pytest.mark.parametrize("status", ["returnedItem", "chargeback"])
def test_a_payment_whose_money_went_back_before_its_job_ran_is_never_applied(
    settings: Settings,
    redis: Redis,
    sandbox_state: SandboxState,
    authorizenet_state: AuthorizeNetState,
    run_worker: RunWorker,
    status: str,
    scan_first: bool,
) -> None:
    """Were the status the payment's own (Authorize.Net publishes returns as transactions
    of their own, below): the notification queued the payment, its job had not run (a
    Nexudus outage, a backlog) when the eCheck was returned or charged back; whichever of
    the two jobs runs first, invoice 43 is not paid, the payment held back, and the
    chargeback won back applies it."""
    sandbox_state.invoices[43]["CurrencyCode"] = "USD"
    captured(authorizenet_state, "7021", "43")
    notification = samples.signed(samples.notification("7021"), AUTHORIZENET_KEY)
    if not scan_first:
        deliver(settings, "authorizenet", notification)
    _listed_as(authorizenet_state, "7021", status)
    [row] = reconcile_providers(settings, redis, last(), ["authorizenet"])
    assert row["queued"] == 1
    if scan_first:
        run_worker()
        deliver(settings, "authorizenet", notification)
    run_worker()

    assert sandbox_state.invoices[43]["PaidOn"] is None
    assert [t for t in sandbox_state.tokens.values() if t["Token"] == "7021"] == []
    [payment_key] = [
        k.decode().removeprefix("payhooks:trail:")
        for k in redis.scan_iter(match="payhooks:trail:authorizenet:*")
        if b"transaction-7021" not in k
    ]
    held = Trail(redis, ttl_seconds=60).history(payment_key)[-1]
    assert held["stage"] == "reversed"
    assert "all of it went back" in str(held["note"])
    if status == "chargeback":
        authorizenet_state.transactions["7021"]["transactionStatus"] = "chargebackReversal"
        reconcile_providers(settings, redis, last(), ["authorizenet"])
        run_worker()
        assert sandbox_state.invoices[43]["PaidOn"] is not None
        assert stages(redis, payment_key)[-1] == "applied"


# What Authorize.Net publishes of a return: the payment keeps its status
# (settledSuccessfully) and names the return in getTransactionDetails' ``returnedItems``
# (AuthorizeNet/sdk-dotnet's ReportingGatewayTest, Reporting_GetTransactionDetailsTest_
# WithReturnedItems: eCheck 2148382212 settledSuccessfully, returned item 2148382213, R03),
# its list entry says ``hasReturnedItems`` (AnetApiSchema.xsd, transactionSummaryType), and
# "eCheck returns generate their own transactions with this status [returnedItem]"
# (Authorize.Net developer community, message 16374). The stand-in's return_item does so.


def test_a_payment_the_list_flags_as_returned_is_flagged_once_applied(
    settings: Settings,
    redis: Redis,
    sandbox_state: SandboxState,
    authorizenet_state: AuthorizeNetState,
    run_worker: RunWorker,
) -> None:
    sandbox_state.invoices[42]["CurrencyCode"] = "USD"
    _notified(settings, authorizenet_state, "7030", "42")
    run_worker()
    paid_on = sandbox_state.invoices[42]["PaidOn"]
    assert paid_on is not None
    settle(authorizenet_state, "B7030", ["7030"])
    return_item(authorizenet_state, "7030", "7031")
    assert authorizenet_state.transactions["7030"]["transactionStatus"] == "settledSuccessfully"
    calls_before = len(api_calls(sandbox_state))

    reconcile_providers(settings, redis, last(), ["authorizenet"])
    run_worker()

    flagged = Trail(redis, ttl_seconds=60).history("authorizenet:transaction-7030-returned")[-1]
    assert (flagged["stage"], flagged["error_class"]) == ("failed", "PaymentReversed")
    assert sandbox_state.invoices[42]["PaidOn"] == paid_on
    assert [c for c in api_calls(sandbox_state)[calls_before:] if c[0] != "GET"] == []
    # Listed again (the weekly scan): one return, one flag.
    again = reconcile_providers(settings, redis, last(), ["authorizenet"])
    assert again[0]["queued"] == 0


def test_a_returned_payment_the_scan_finds_first_is_never_applied(
    settings: Settings,
    redis: Redis,
    sandbox_state: SandboxState,
    authorizenet_state: AuthorizeNetState,
    run_worker: RunWorker,
) -> None:
    """Its notification comes (or is replayed) after the scan: the return is recorded
    before the payment's own listed event runs, and holds both it and the notification."""
    sandbox_state.invoices[43]["CurrencyCode"] = "USD"
    captured(authorizenet_state, "7032", "43")
    settle(authorizenet_state, "B7032", ["7032"])
    return_item(authorizenet_state, "7032", "7033")

    reconcile_providers(settings, redis, last(), ["authorizenet"])
    run_worker()
    deliver(
        settings, "authorizenet", samples.signed(samples.notification("7032"), AUTHORIZENET_KEY)
    )
    run_worker()

    assert sandbox_state.invoices[43]["PaidOn"] is None
    assert [t for t in sandbox_state.tokens.values() if t["Token"] == "7032"] == []
    assert stages(redis, "authorizenet:transaction-7032-paid")[-1] == "reversed"


def test_a_chargeback_reversal_of_its_own_is_never_counted_as_a_payment(
    settings: Settings,
    redis: Redis,
    sandbox_state: SandboxState,
    authorizenet_state: AuthorizeNetState,
    run_worker: RunWorker,
    queue: Queue,
) -> None:
    """An eCheck charged back, then the chargeback reversed: each its own transaction in
    a batch of its day, naming the order's invoice. The reversal is not a second payment
    of invoice 44 (no token, no PaidOn from it); the payment stays flagged for a person."""
    sandbox_state.invoices[44]["CurrencyCode"] = "USD"
    _notified(settings, authorizenet_state, "7040", "44")
    run_worker()
    settle(authorizenet_state, "B7040", ["7040"])
    return_item(authorizenet_state, "7040", "7041", status="chargeback", code="R10")
    return_item(authorizenet_state, "7040", "7042", status="chargebackReversal", code="R10")
    calls_before = len(api_calls(sandbox_state))

    reconcile_providers(settings, redis, last(), ["authorizenet"])
    run_worker()

    assert [c for c in api_calls(sandbox_state)[calls_before:] if c[0] != "GET"] == []
    assert [t for t in sandbox_state.tokens.values() if t["Token"] == "7042"] == []
    assert not redis.exists("payhooks:trail:authorizenet:transaction-7042-paid")
    [failed] = [queue.fetch_job(j) for j in queue.failed_job_registry.get_job_ids()]
    assert failed is not None
    flagged = Trail(redis, ttl_seconds=60).history("authorizenet:transaction-7040-returned")[-1]
    assert (flagged["stage"], flagged["error_class"]) == ("failed", "PaymentReversed")


@pytest.mark.parametrize("scanned", [False, True], ids=["before-the-scan", "after-the-scan"])
def test_the_audit_sees_the_return_of_a_payment_its_notification_applied(
    settings: Settings,
    redis: Redis,
    sandbox_state: SandboxState,
    authorizenet_state: AuthorizeNetState,
    run_worker: RunWorker,
    capsys: pytest.CaptureFixture[str],
    scanned: bool,
) -> None:
    """The notification's key is no listed key, so nothing the list names was recorded:
    the payment our ledger counted was received all the same, and its return, listed and
    never brought to us, is a finding until a scan records it (then: reversed)."""
    sandbox_state.invoices[42]["CurrencyCode"] = "USD"
    _notified(settings, authorizenet_state, "7050", "42")
    run_worker()
    settle(authorizenet_state, "B7050", ["7050"])
    return_item(authorizenet_state, "7050", "7051")
    if scanned:
        reconcile_providers(settings, redis, last(), ["authorizenet"])
        run_worker()

    window = argparse.Namespace(
        providers=["authorizenet"], since="1d", until=last().until.isoformat(), json=True
    )
    run_audit(settings, window)
    report = json.loads(capsys.readouterr().out)
    [finding] = [f for f in report["discrepancies"] if "7050" in f["event"]] or [None]
    if scanned:
        assert finding is None
        assert report["counts"].get("reversed") == 1
    else:
        assert finding is not None
        assert finding["event"] == "authorizenet:transaction-7050-returned"
        assert finding["status"] == "never_received"


@pytest.mark.parametrize("returned", ["as-published", "as-the-payment's-status"])
def test_a_retry_after_a_put_that_landed_and_a_return_flags_the_payment_once(
    settings: Settings,
    redis: Redis,
    sandbox_state: SandboxState,
    authorizenet_state: AuthorizeNetState,
    queue: Queue,
    returned: str,
) -> None:
    """The notification's PUT lands but its answer is lost: its retry waits (backoff).
    Meanwhile the scan finds the eCheck returned. The retry finds PaidOn, which is our own
    write, and the return: one PaymentReversed for a person, and no second failure telling
    that no money was recorded."""
    patient = with_settings(settings, job_retry_base_seconds=60)
    sandbox_state.invoices[42]["CurrencyCode"] = "USD"
    captured(authorizenet_state, "7060", "42")
    sandbox_state.faults.append(Fault("PUT", INVOICES, 500, after_apply=True))
    deliver(patient, "authorizenet", samples.signed(samples.notification("7060"), AUTHORIZENET_KEY))
    run_burst_worker(patient, redis, queue)
    paid_on = sandbox_state.invoices[42]["PaidOn"]
    assert paid_on is not None  # landed
    [retry] = queue.scheduled_job_registry.get_job_ids()
    if returned == "as-published":
        settle(authorizenet_state, "B7060", ["7060"])
        return_item(authorizenet_state, "7060", "7061")
    else:
        _listed_as(authorizenet_state, "7060", "returnedItem")

    reconcile_providers(patient, redis, last(), ["authorizenet"])
    run_burst_worker(patient, redis, queue)
    queue.scheduled_job_registry.requeue(retry)
    run_burst_worker(patient, redis, queue)

    failures = [
        Trail(redis, ttl_seconds=60).history(key)[-1]
        for key in (
            k.decode().removeprefix("payhooks:trail:")
            for k in redis.scan_iter(match="payhooks:trail:authorizenet:*")
        )
    ]
    failed = [(f["stage"], f.get("error_class")) for f in failures if f["stage"] == "failed"]
    assert failed == [("failed", "PaymentReversed")]
    assert sandbox_state.invoices[42]["PaidOn"] == paid_on


def test_a_chargeback_reversed_before_its_chargeback_job_runs_flags_nothing(
    settings: Settings,
    redis: Redis,
    sandbox_state: SandboxState,
    authorizenet_state: AuthorizeNetState,
    run_worker: RunWorker,
    queue: Queue,
) -> None:
    """Were the status the payment's own: two scans a week apart find the chargeback,
    then its reversal, while the chargeback's job waits (a backlog, a retry): the
    reinstatement runs first, and for good; the chargeback's job then counts nothing."""
    sandbox_state.invoices[42]["CurrencyCode"] = "USD"
    _notified(settings, authorizenet_state, "7070", "42")
    run_worker()
    paid_on = sandbox_state.invoices[42]["PaidOn"]
    _listed_as(authorizenet_state, "7070", "chargeback")
    reconcile_providers(settings, redis, last(), ["authorizenet"])
    authorizenet_state.transactions["7070"]["transactionStatus"] = "chargebackReversal"
    reconcile_providers(settings, redis, last(), ["authorizenet"])
    chargeback = redis_keys.job_id("authorizenet:transaction-7070-chargeback")
    assert redis.lrem(queue.key, 0, chargeback) == 1
    redis.rpush(queue.key, chargeback)  # behind the reinstatement
    calls_before = len(api_calls(sandbox_state))

    run_worker()

    assert len(queue.failed_job_registry) == 0
    assert stages(redis, "authorizenet:transaction-7070-chargeback-reversed")[-1] == "no_write"
    assert stages(redis, "authorizenet:transaction-7070-chargeback")[-1] == "no_write"
    assert sandbox_state.invoices[42]["PaidOn"] == paid_on
    assert [c for c in api_calls(sandbox_state)[calls_before:] if c[0] != "GET"] == []


def test_a_return_of_a_payment_refunded_in_part_flags_it_again_for_all_of_it(
    settings: Settings,
    redis: Redis,
    sandbox_state: SandboxState,
    authorizenet_state: AuthorizeNetState,
    run_worker: RunWorker,
    queue: Queue,
) -> None:
    """100.00 paid invoice 42; 30.00 refunded (flagged: the invoice is paid); then the
    bank returns the rest. Everything went back: flagged once more, as more money went
    back than was flagged; the refund, listed too, counts once."""
    sandbox_state.invoices[42]["CurrencyCode"] = "USD"
    _notified(settings, authorizenet_state, "7080", "42")
    run_worker()
    authorizenet_state.transactions["7081"] = transaction_record(
        "7081",
        invoice_number="42",
        amount="30.00",
        status="refundPendingSettlement",
        refunds="7080",
    )
    refund = samples.notification("7081", amount=Decimal("30.00"), event="refund.created")
    deliver(settings, "authorizenet", samples.signed(refund, AUTHORIZENET_KEY))
    run_worker()
    settle(authorizenet_state, "B7080", ["7080", "7081"])
    return_item(authorizenet_state, "7080", "7082")
    paid_on = sandbox_state.invoices[42]["PaidOn"]
    calls_before = len(api_calls(sandbox_state))

    reconcile_providers(settings, redis, last(), ["authorizenet"])
    run_worker()

    reasons = [
        str(job.meta["failure"]["reason"])
        for job in (queue.fetch_job(i) for i in queue.failed_job_registry.get_job_ids())
        if job is not None
    ]
    assert len(reasons) == 2
    assert any("30.0 USD went back (7081)" in r for r in reasons)
    assert any("all of it went back (7080, 7081)" in r for r in reasons)
    assert stages(redis, "authorizenet:transaction-7081-refunded")[-1] == "no_write"
    assert sandbox_state.invoices[42]["PaidOn"] == paid_on
    assert [c for c in api_calls(sandbox_state)[calls_before:] if c[0] != "GET"] == []


def test_a_notified_payment_returned_before_its_job_runs_is_held_without_a_scan(
    settings: Settings,
    redis: Redis,
    sandbox_state: SandboxState,
    authorizenet_state: AuthorizeNetState,
    run_worker: RunWorker,
) -> None:
    """Its job ran late (a Nexudus outage, a backlog, a replay) after the bank returned the
    eCheck, and no scan has listed the return yet: the job's own lookup names the return
    (``returnedItems``, the payment keeping its status), so the payment is held, never
    applied with money that went back."""
    sandbox_state.invoices[43]["CurrencyCode"] = "USD"
    _notified(settings, authorizenet_state, "7040", "43")
    settle(authorizenet_state, "B7040", ["7040"])
    return_item(authorizenet_state, "7040", "7041")

    run_worker()

    assert sandbox_state.invoices[43]["PaidOn"] is None
    assert [t for t in sandbox_state.tokens.values() if t["Token"] == "7040"] == []
    [payment_key] = [
        k.decode().removeprefix("payhooks:trail:")
        for k in redis.scan_iter(match="payhooks:trail:authorizenet:*")
    ]
    assert stages(redis, payment_key)[-1] == "reversed"
    # The scan then lists the return: the same reversal, counted once, no write.
    calls_before = len(api_calls(sandbox_state))
    reconcile_providers(settings, redis, last(), ["authorizenet"])
    run_worker()
    assert stages(redis, "authorizenet:transaction-7040-returned")[-1] == "no_write"
    assert [c for c in api_calls(sandbox_state)[calls_before:] if c[0] != "GET"] == []
    assert sandbox_state.invoices[43]["PaidOn"] is None
