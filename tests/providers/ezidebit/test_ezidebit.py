"""EziDebit: no webhook, a poll of Ezidebit's GetPayments by settlement date, through the
scheduler's task, the record-once hand-off and a real RQ worker to the Nexudus sandbox.

Ezidebit's published GetPayments answer (tests/fixtures/ezidebit/README.md: the API
specification's example, as jstaff/directdebit-ruby's test_get_payments reproduces it) is
read as it stands; the stand-in answers in the same shape."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from redis import Redis
from rq import Queue, SimpleWorker

from payhooks.cli.main import main
from payhooks.cli.reconcile import reconcile_providers
from payhooks.devtools.sandbox.nexudus import SandboxState
from payhooks.domain.events import Ignored, InvoiceRef, PaymentEvent, PaymentKind
from payhooks.providers.ezidebit.formats import (
    EZIDEBIT_TIME,
    EziDebitAnswerError,
    get_payments_request,
    normalise_row,
    parse_xml,
    payment_rows,
    record_of,
)
from payhooks.providers.ezidebit.poller import EziDebitPoller, ezidebit_now
from payhooks.providers.ezidebit.settings import EziDebitSettings
from payhooks.providers.ezidebit.stand_in import DIGITAL_KEY, EziDebitState, payment_row
from payhooks.providers.kit.listing import Window
from payhooks.settings import ConfigError, Intake, Settings
from payhooks.storage import redis_keys
from payhooks.storage.jobs import queued_event
from payhooks.storage.task_lease import TaskLease
from payhooks.storage.trail import Trail
from payhooks.storage.worker_metrics import WorkerMetrics
from tests.support.delivery import finished, queued_job
from tests.support.paths import FIXTURES
from tests.support.settings import with_section
from workers import context
from workers.polls import poll_task
from workers.reconcile import reconcile_task
from workers.scheduler import Scheduler
from workers.tasks import run

PUBLISHED = (FIXTURES / "ezidebit" / "get_payments_published.xml").read_bytes()
TASK = poll_task("ezidebit")


@pytest.fixture
def ezidebit_state() -> EziDebitState:
    """The Ezidebit stand-in's payments and calls (the sandbox fixture serves it)."""
    return EziDebitState()


def row(**fields: Any) -> bytes:
    base = payment_row("42", "100.00", payment_id="WEB1", settled="2026-12-01T00:00:00")
    return record_of({**base, **fields})


def run_poll(ctx: context.WorkerContext, redis: Redis) -> dict[str, Any]:
    lease = TaskLease(redis, TASK, seconds=30, cursor_ttl_seconds=600)
    return run(ctx.tasks[TASK], lease, WorkerMetrics(redis))


def drain(queue: Queue, redis: Redis) -> None:
    SimpleWorker([queue], connection=redis).work(burst=True)


def register(state: EziDebitState, invoice: int, status: str = "S", **fields: Any) -> str:
    found = payment_row(str(invoice), "100.00", status=status, **fields)
    state.payments = [p for p in state.payments if p["PaymentID"] != found["PaymentID"]]
    state.payments.append(found)
    return str(found["PaymentID"])


def test_a_poll_only_provider_has_no_url_and_its_key_turns_the_poll_on() -> None:
    assert EziDebitSettings.intakes() == {Intake.POLL: "digital_key"}
    assert EziDebitSettings.enabling_variable() == "EZIDEBIT_DIGITAL_KEY"
    section = EziDebitSettings.from_env({"EZIDEBIT_DIGITAL_KEY": DIGITAL_KEY})
    assert section.intake_enabled(Intake.POLL)
    assert section.urls("ezidebit") == []
    assert (section.api_url, section.poll_seconds) == (
        "https://api.ezidebit.com.au/v3-5/nonpci",
        3600,
    )
    assert DIGITAL_KEY not in repr(section)
    with pytest.raises(ConfigError, match="EZIDEBIT_API_URL must be https"):
        EziDebitSettings(api_url="http://api.ezidebit.com.au/v3-5/nonpci").check()


def test_ezidebits_published_get_payments_answer_is_read_field_by_field() -> None:
    rows = payment_rows(parse_xml(PUBLISHED))
    assert [r["PaymentID"] for r in rows] == ["WEB48992", "WEB48993"]
    first = rows[0]
    assert first["SettlementDate"] is None  # i:nil="true"
    assert first["BankFailedReason"] == ""
    assert first["EzidebitCustomerID"] == ""  # spelled EziDebitCustomerID in the example
    (event,) = normalise_row(record_of(first), "AUD")
    assert isinstance(event, PaymentEvent)
    assert (event.event_id, event.kind, event.token) == (
        "WEB48992-P",
        PaymentKind.PENDING,
        "WEB48992",
    )
    assert event.invoice == InvoiceRef(invoice_id=45)  # PaymentReference
    assert (event.amount, event.currency) == (Decimal(20), "AUD")  # PaymentAmount
    assert event.payment_method == "card"  # CR
    assert event.occurred_at == datetime(2011, 1, 4, tzinfo=EZIDEBIT_TIME)  # DebitDate, AEST


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        ("S", PaymentKind.PAID),
        ("D", PaymentKind.FAILED),
        ("F", PaymentKind.FAILED),
        ("W", PaymentKind.PENDING),
        ("P", PaymentKind.PENDING),
    ],
)
def test_payment_status_letters_map_to_kinds_keyed_by_payment_and_status(
    status: str, kind: PaymentKind
) -> None:
    reason = "" if status == "S" else "Refer to Customer"
    (event,) = normalise_row(row(PaymentStatus=status, BankFailedReason=reason), "AUD")
    assert isinstance(event, PaymentEvent)
    assert (event.kind, event.event_id, event.token) == (kind, f"WEB1-{status}", "WEB1")
    assert event.regular_payment_provider == 9
    if kind is PaymentKind.FAILED:
        assert event.details["bank_reason"] == "Refer to Customer"


def test_the_invoice_is_the_payment_reference_else_your_system_reference() -> None:
    (event,) = normalise_row(row(PaymentReference="", YourSystemReference="INV-7"), "AUD")
    assert isinstance(event, PaymentEvent)
    assert event.invoice == InvoiceRef(number="INV-7")
    unknown, no_id = (
        normalise_row(row(PaymentStatus="X"), "AUD")[0],
        normalise_row(row(PaymentID=None), "AUD")[0],
    )
    assert isinstance(unknown, Ignored)
    assert isinstance(no_id, Ignored)
    assert no_id.reason == "row has no PaymentID"


def test_the_request_asks_for_every_payment_by_settlement_date_and_escapes_the_key() -> None:
    body = get_payments_request("k<&>", datetime(2026, 11, 24).date(), datetime(2026, 12, 1).date())
    text = body.decode()
    assert "<px:DateField>SETTLEMENT</px:DateField>" in text
    assert "<px:DateFrom>2026-11-24</px:DateFrom><px:DateTo>2026-12-01</px:DateTo>" in text
    assert "<px:PaymentType>ALL</px:PaymentType>" in text
    assert "<px:DigitalKey>k&lt;&amp;&gt;</px:DigitalKey>" in text
    parse_xml(body)  # well-formed


def test_each_poll_overlaps_the_last_by_a_week_and_catches_up_from_an_old_cursor() -> None:
    now = datetime(2026, 12, 8, 7, 0, tzinfo=EZIDEBIT_TIME)
    poller = EziDebitPoller(EziDebitSettings(digital_key=DIGITAL_KEY), now=lambda: now)
    assert [d.isoformat() for d in poller.window(None)] == ["2026-12-01", "2026-12-08"]
    assert [d.isoformat() for d in poller.window("2026-12-08")] == ["2026-12-01", "2026-12-08"]
    assert [d.isoformat() for d in poller.window("2026-11-02")] == ["2026-10-26", "2026-12-08"]
    assert [d.isoformat() for d in poller.window("garbage")] == ["2026-12-01", "2026-12-08"]


@pytest.mark.parametrize(
    "answer",
    [
        b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaa">]><x>&a;</x>',
        b'<!DOCTYPE x SYSTEM "http://example.com/x.dtd"><x/>',
        b"<unclosed>",
    ],
    ids=["entity", "dtd", "broken"],
)
def test_hostile_or_broken_xml_is_refused_not_expanded(answer: bytes) -> None:
    with pytest.raises(EziDebitAnswerError):
        parse_xml(answer)


def test_a_settled_payment_is_polled_applied_once_and_read_again_as_a_duplicate(
    settings: Settings,
    redis: Redis,
    queue: Queue,
    worker_context: context.WorkerContext,
    sandbox_state: SandboxState,
    ezidebit_state: EziDebitState,
    sandbox: Any,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # `send-test ezidebit` registers a settled payment with the stand-in, as in `payhooks dev`.
    code = main(
        ["send-test", "ezidebit", "--invoice", "42", "--url", "http://127.0.0.1:9",
         "--sandbox-url", sandbox.url]
    )  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0, out
    assert "/_sandbox/ezidebit/payments -> 200" in out
    (registered,) = ezidebit_state.payments
    payment_id = registered["PaymentID"]
    assert f"payhooks trace ezidebit:{payment_id}-S" in out

    # The scheduler queues the poll; a worker runs it, then the payment it queued.
    Scheduler(redis, settings, worker_context.tasks).queue_due(time.time())
    drain(queue, redis)
    invoice = sandbox_state.invoices[42]
    assert invoice["Paid"] is True
    (token,) = [t for t in sandbox_state.tokens.values() if t["CoworkerInvoiceId"] == 42]
    assert (token["RegularPaymentProvider"], token["Token"]) == (9, payment_id)
    date_from, date_to, field = ezidebit_state.requests[0]
    assert field == "SETTLEMENT"
    assert (datetime.fromisoformat(date_to) - datetime.fromisoformat(date_from)).days == 7
    assert redis.get(redis_keys.task_cursor(TASK)) == date_to.encode()
    trail = Trail(redis, ttl_seconds=60).history(f"ezidebit:{payment_id}-S")
    assert [e["stage"] for e in trail][:2] == ["polled", "enqueued"]
    assert trail[-1]["stage"] == "applied"

    # The next poll reads the same window again: a duplicate, never a second job.
    again = run_poll(worker_context, redis)
    assert (again["result"], again["queued"], again["duplicate"]) == ("ok", 0, 1)
    assert len(ezidebit_state.requests) == 2


def test_a_dishonour_after_the_payment_settled_is_flagged_for_a_person_never_unpaid(
    redis: Redis,
    queue: Queue,
    worker_context: context.WorkerContext,
    sandbox_state: SandboxState,
    ezidebit_state: EziDebitState,
) -> None:
    payment_id = register(ezidebit_state, 43)
    assert run_poll(worker_context, redis)["queued"] == 1
    drain(queue, redis)
    assert sandbox_state.invoices[43]["Paid"] is True

    # Days later Ezidebit reports the same payment dishonoured (a late return by the bank).
    register(ezidebit_state, 43, status="D", payment_id=payment_id, reason="Insufficient Funds")
    assert run_poll(worker_context, redis)["queued"] == 1
    drain(queue, redis)
    assert sandbox_state.invoices[43]["Paid"] is True  # never unpaid by payhooks
    job = queued_job(redis, f"ezidebit:{payment_id}-D")
    assert job.is_failed
    assert job.meta["failure"]["error_class"] == "PaymentReversed"  # for a person
    reversals = redis.hgetall(redis_keys.payment_reversals("ezidebit", payment_id))
    assert len(reversals) == 1


def test_a_dishonour_of_a_payment_never_seen_settled_is_a_failure_with_the_banks_reason(
    redis: Redis,
    queue: Queue,
    worker_context: context.WorkerContext,
    sandbox_state: SandboxState,
    ezidebit_state: EziDebitState,
) -> None:
    payment_id = register(ezidebit_state, 44, status="F", reason="Account Closed")
    assert run_poll(worker_context, redis)["queued"] == 1
    key = f"ezidebit:{payment_id}-F"
    stored = queued_event(redis, key)  # as its job holds it (until it finishes)
    assert stored is not None
    assert stored.kind == "failed"
    assert stored.details["bank_reason"] == "Account Closed"
    drain(queue, redis)
    assert sandbox_state.invoices[44]["Paid"] is False
    assert finished(redis, key) == "no_write"
    assert not redis.exists(redis_keys.payment_reversals("ezidebit", payment_id))


def test_a_late_return_of_a_payment_payhooks_never_saw_settle_is_for_a_person(
    redis: Redis,
    queue: Queue,
    worker_context: context.WorkerContext,
    ezidebit_state: EziDebitState,
) -> None:
    ezidebit_state.payments.append(
        payment_row("45", "-100.00", status="S", payment_id="WEB9", reason="Late Return")
    )
    assert run_poll(worker_context, redis)["queued"] == 1
    drain(queue, redis)
    job = queued_job(redis, "ezidebit:WEB9-S-late-return")
    assert job.is_failed
    assert job.meta["failure"]["error_class"] == "LateReturnUnmatched"


@pytest.mark.parametrize(
    ("scripted", "result", "reason"),
    [
        ("fault", "unavailable", "SOAP fault (s:Server"),
        ("102", "refused", "Error 102"),
        ("wrong key", "refused", "Error 1: Invalid DigitalKey"),
    ],
)
def test_soap_faults_and_error_codes_are_the_runs_classified_result_and_move_nothing(
    settings: Settings,
    redis: Redis,
    ezidebit_state: EziDebitState,
    scripted: str,
    result: str,
    reason: str,
) -> None:
    key = "11111111-2222-3333-4444-555555555555"
    if scripted == "wrong key":
        settings = with_section(settings, EziDebitSettings, digital_key=key)
    else:
        ezidebit_state.scripted.append(scripted)
    register(ezidebit_state, 46)
    ctx = context.build_context(settings)
    try:
        ran = run_poll(ctx, redis)
    finally:
        ctx.close()
    assert ran["result"] == result
    assert reason in ran["reason"]
    assert key not in ran["reason"]
    assert not redis.exists(redis_keys.task_cursor(TASK))  # the next tick asks again
    assert Queue(settings.queue_name, connection=redis).count == 0


def test_reconcile_reads_the_window_asked_for_beyond_the_polls_week(
    settings: Settings,
    redis: Redis,
    queue: Queue,
    worker_context: context.WorkerContext,
    sandbox_state: SandboxState,
    ezidebit_state: EziDebitState,
) -> None:
    # Settled twelve days ago, while the scheduler was down: each poll reads a week only.
    twelve_days_ago = (ezidebit_now() - timedelta(days=12)).replace(microsecond=0, tzinfo=None)
    payment_id = register(ezidebit_state, 42, settled=twelve_days_ago.isoformat())
    assert run_poll(worker_context, redis)["queued"] == 0

    now = datetime.now(tz=UTC)
    window = Window(now - timedelta(days=14), now)
    [found] = reconcile_providers(settings, redis, window, ["ezidebit"])
    assert (found["provider"], found["queued"], found["result"]) == ("ezidebit", 1, "ok")
    drain(queue, redis)
    (token,) = [t for t in sandbox_state.tokens.values() if t["CoworkerInvoiceId"] == 42]
    assert (token["RegularPaymentProvider"], token["Token"]) == (9, payment_id)
    assert sandbox_state.invoices[42]["PaidOn"] is not None
    date_from, date_to, _ = ezidebit_state.requests[-1]
    assert date_from <= twelve_days_ago.date().isoformat() <= date_to

    # Asked again: seen, never a second job.
    [again] = reconcile_providers(settings, redis, window, ["ezidebit"])
    assert (again["seen"], again["queued"]) == (1, 0)
    # No provider named means every one configured, the poll-only EziDebit too (it is no
    # webhook URL)...
    rows = reconcile_providers(settings, redis, window, None)
    assert [(r["seen"], r["result"]) for r in rows if r["provider"] == "ezidebit"] == [(1, "ok")]
    # ...but never scheduled: its poll reads an overlapping week already.
    scheduled = set(worker_context.tasks)
    assert reconcile_task("braintree", thorough=True) in scheduled  # scans are scheduled here
    assert not {reconcile_task("ezidebit", thorough=t) for t in (True, False)} & scheduled
