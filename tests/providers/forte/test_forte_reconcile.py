"""Reconciling Forte (issue 19): the transactions list of each configured location and its
ACH returns (``settlements`` of type ``reject``), read from the stand-in over HTTP, handed
to record-once, and applied by a real RQ worker to the Nexudus sandbox.

Fixtures: transactions are shaped as the stand-in's ``transaction_record`` writes them
(fields of Forte's published webhook sample, support.forte.net article 1000102770, and the
v3 transaction object); settlements with the fields developers.forte.net "Settlements"
lists. Forte publishes no example list response that could be read: the envelope
(``number_results``, ``search_criteria``, ``results``) is the one public v3 clients read.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from redis import Redis
from rq import Queue

from payhooks.cli.reconcile import reconcile_providers
from payhooks.devtools.sandbox.nexudus import INVOICES, Fault, SandboxState
from payhooks.domain.messages import body_digest
from payhooks.providers.forte import sample as samples
from payhooks.providers.forte.lister import ForteLister
from payhooks.providers.forte.settings import ForteSettings
from payhooks.providers.forte.stand_in import (
    FORTE_TIME,
    LOCATION_ID,
    ForteState,
    settlement_record,
    transaction_record,
)
from payhooks.providers.kit.listing import Window
from payhooks.settings import Settings
from payhooks.storage import redis_keys
from payhooks.storage.jobs import JobFactory
from payhooks.storage.record_once import RecordOnce
from payhooks.storage.trail import Trail
from payhooks.storage.unapplied import overdue_before
from tests.support.delivery import deliver, queued_job
from tests.support.money import requeue_scheduled
from tests.support.processes import RunWorker
from tests.support.settings import with_section
from workers.reconcile import WindowCursor, scan

OTHER_LOCATION = "loc_191621"


@pytest.fixture
def forte_state() -> ForteState:
    """The Forte stand-in's transactions and settlements (the sandbox fixture serves it)."""
    return ForteState()


def last(hours: float = 2) -> Window:
    now = datetime.now(tz=UTC).replace(microsecond=0)
    return Window(now - timedelta(hours=hours), now + timedelta(seconds=5))


def forte_date(days_ago: float = 0) -> str:
    """A date as Forte writes ``received_date``, ``days_ago`` days back."""
    at = datetime.now(tz=FORTE_TIME) - timedelta(days=days_ago)
    return at.isoformat(timespec="microseconds")


def sale(forte: ForteState, transaction_id: str, invoice: int, **record: Any) -> dict[str, Any]:
    forte.transactions[transaction_id] = transaction_record(
        transaction_id, order_number=str(invoice), amount="100.00", **record
    )
    return forte.transactions[transaction_id]


def webhook_for(settings: Settings, transaction: dict[str, Any]) -> str:
    """Forte's webhook of the sale as it stood (its key, as the receiver queues it)."""
    body = json.dumps(
        samples.webhook(
            transaction["transaction_id"],
            order_number=transaction["order_number"],
            received_date=transaction["received_date"],
        )
    ).encode()
    assert [a.value for a in deliver(settings, "forte", body)] == ["queued"]
    return f"forte:{transaction['transaction_id']}:ready:{body_digest(body)}"


def stages(redis: Redis, event_key: str) -> list[str]:
    return [str(e["stage"]) for e in Trail(redis, ttl_seconds=60).history(event_key)]


def reconcile(settings: Settings, redis: Redis, window: Window | None = None) -> dict[str, Any]:
    [row] = reconcile_providers(settings, redis, window or last(), ["forte"])
    return row


def counts(row: dict[str, Any]) -> tuple[int, int, int, str]:
    return (row["scanned"], row["seen"], row["queued"], row["result"])


def test_a_sale_whose_webhook_never_came_is_recovered_and_applied(
    settings: Settings,
    redis: Redis,
    sandbox_state: SandboxState,
    forte_state: ForteState,
    run_worker: RunWorker,
) -> None:
    sale(forte_state, "trn_missed", 42)

    assert counts(reconcile(settings, redis)) == (1, 0, 1, "ok")
    assert forte_state.lookups == 0  # the list, not one GET per transaction
    run_worker()

    assert sandbox_state.invoices[42]["PaidOn"] is not None
    [token] = sandbox_state.tokens.values()
    assert (token["Token"], token["RegularPaymentProvider"]) == ("trn_missed", 3)
    trail = stages(redis, "forte:trn_missed:ready:listed")
    assert trail[:2] == ["polled", "enqueued"]
    assert trail[-1] == "applied"
    assert counts(reconcile(settings, redis)) == (1, 1, 0, "ok")


def test_a_sale_a_webhook_brought_is_not_queued_twice_and_a_funded_echeck_is_found(
    settings: Settings,
    redis: Redis,
    queue: Queue,
    sandbox_state: SandboxState,
    forte_state: ForteState,
    run_worker: RunWorker,
) -> None:
    card = sale(forte_state, "trn_card", 42)
    echeck = sale(forte_state, "trn_echeck", 43, echeck=True)
    card_key = webhook_for(settings, card)
    webhook_for(settings, echeck)
    # The card's job meets Nexudus down once, and reads the sale from Forte again.
    sandbox_state.faults.append(Fault("PUT", INVOICES, 503))
    run_worker()
    assert forte_state.lookups == 3
    assert sandbox_state.invoices[42]["PaidOn"] is not None
    assert sandbox_state.invoices[43]["PaidOn"] is None  # an eCheck ready: pending
    # Days later Forte funds the eCheck, and sends no webhook for it.
    echeck["status"] = "funded"

    row = reconcile(settings, redis)

    assert counts(row) == (2, 1, 1, "ok")
    assert queue.count == 1
    # Marked once by the webhook's job, however often it ran.
    assert stages(redis, "forte:trn_card:ready:listed") == ["enqueued"]
    assert stages(redis, card_key)[:2] == ["received", "enqueued"]
    run_worker()
    assert sandbox_state.invoices[43]["PaidOn"] is not None
    assert [t["Token"] for t in sandbox_state.tokens.values()].count("trn_echeck") == 1
    assert counts(reconcile(settings, redis)) == (2, 2, 0, "ok")


def test_a_return_found_by_reconcile_is_flagged_for_a_person_and_unpays_nothing(
    settings: Settings,
    redis: Redis,
    sandbox_state: SandboxState,
    forte_state: ForteState,
    run_worker: RunWorker,
) -> None:
    # Received ten days ago (outside the window), pending since; returned today.
    echeck = sale(forte_state, "trn_returned", 44, echeck=True, received_date=forte_date(10))
    webhook_for(settings, echeck)
    run_worker()
    echeck["status"] = "rejected"
    forte_state.settlements.append(settlement_record(echeck, settle_date=forte_date()))
    invoice_before = dict(sandbox_state.invoices[44])

    assert counts(reconcile(settings, redis)) == (1, 0, 1, "ok")  # the settlement only
    run_worker()

    job = queued_job(redis, "forte:trn_returned:rejected:listed")
    assert job.is_failed
    reason = job.meta["failure"]["reason"]
    assert "Forte returned eCheck sale trn_returned" in reason
    assert "invoice is left as it is" in reason
    assert stages(redis, "forte:trn_returned:rejected:listed")[-1] == "failed"
    assert redis.hget("payhooks:metrics:jobs", "failed|EcheckReturned") == b"1"
    assert sandbox_state.invoices[44] == invoice_before
    # Flagged once: the next scan finds the return seen.
    assert counts(reconcile(settings, redis)) == (1, 1, 0, "ok")


def test_pages_of_every_location_and_both_lists_are_read(
    settings: Settings, redis: Redis, forte_state: ForteState
) -> None:
    settings = with_section(settings, ForteSettings, location_ids=(LOCATION_ID, OTHER_LOCATION))
    for n in range(5):
        sale(forte_state, f"trn_a{n}", 42, received_date=forte_date(n / 24))
    sale(forte_state, "trn_b0", 43, location_id=OTHER_LOCATION)
    returned = sale(forte_state, "trn_a9", 44, echeck=True, status="rejected")
    forte_state.settlements.append(settlement_record(returned))
    window = last(hours=8)
    lister = ForteLister(settings.provider(ForteSettings), page_size=2)
    record = RecordOnce(JobFactory(settings), event_ttl_seconds=settings.event_ttl_seconds)

    done = scan(
        lister,
        window,
        WindowCursor(redis, "forte", window, ttl_seconds=60),
        redis,
        record,
        thorough=True,
    )

    # 6 sales at the first location (pages of 2, 2, 2), its return (the same event as its
    # rejected sale: seen), then the other location's sale and its empty settlements.
    assert (done.scanned, done.queued, done.seen, done.pages) == (8, 7, 1, 6)
    asked = [(*r["path"].split("/")[-2:], r["page_index"]) for r in forte_state.list_requests]
    assert asked == [
        (LOCATION_ID, "transactions", "0"),
        (LOCATION_ID, "transactions", "1"),
        (LOCATION_ID, "transactions", "2"),
        (LOCATION_ID, "settlements", "0"),
        (OTHER_LOCATION, "transactions", "0"),
        (OTHER_LOCATION, "settlements", "0"),
    ]
    assert all("and end_" in r["filter"] for r in forte_state.list_requests)
    assert forte_state.lookups == 0


def test_a_list_answering_429_is_waited_for_not_hammered(
    settings: Settings, redis: Redis, forte_state: ForteState
) -> None:
    sale(forte_state, "trn_later", 42)
    forte_state.list_faults += [429, 429]
    waits: list[float] = []

    [row] = reconcile_providers(settings, redis, last(), ["forte"], sleep=waits.append)

    assert counts(row) == (1, 0, 1, "ok")
    assert waits == [0.0, 0.0]  # Forte's Retry-After
    assert len(forte_state.list_requests) == 4  # 2 refused, then both lists once


def test_a_sale_its_webhook_brought_counts_as_unapplied_while_nexudus_is_down(
    settings: Settings,
    redis: Redis,
    queue: Queue,
    sandbox_state: SandboxState,
    forte_state: ForteState,
    run_worker: RunWorker,
) -> None:
    """Forte's webhook names neither card nor eCheck, so its ``ready`` is only a pending
    hint at hand-off: the payment enters the unapplied gauge once its job has read it paid,
    and stays there while it cannot be applied (a reconcile scan then finds it seen)."""
    paid = sale(forte_state, "trn_stuck", 42, received_date=forte_date(45 / 1440))
    webhook_for(settings, paid)
    sandbox_state.faults.append(Fault("GET", INVOICES, 503, times=1000))

    run_worker()  # retried in place, then left to RQ's backoff

    overdue = redis.zcount(redis_keys.UNAPPLIED, "-inf", overdue_before())
    assert overdue == 1  # paid 45 minutes ago, not applied
    assert counts(reconcile(settings, redis)) == (1, 1, 0, "ok")  # the job has it
    # The outage over: no more faults, and its breaker closed.
    sandbox_state.faults.clear()
    redis.delete(*redis.keys(redis_keys.breaker("nexudus") + "*"))
    requeue_scheduled(redis, queue)
    run_worker()
    assert sandbox_state.invoices[42]["PaidOn"] is not None
    assert redis.zcard(redis_keys.UNAPPLIED) == 0


def test_an_echeck_funded_after_the_window_of_its_sale_is_found_by_its_deposit(
    settings: Settings,
    redis: Redis,
    sandbox_state: SandboxState,
    forte_state: ForteState,
    run_worker: RunWorker,
) -> None:
    """Forte sends no webhook when an eCheck is funded, and lists transactions by the date
    it received them: one funded six days after its sale (a weekend, a bank holiday) is
    outside every scheduled window of the transactions list. Its settlement of type
    ``deposit`` ("payment received", developers.forte.net Settlements) is dated the day the
    money came, so the scan reads deposits as well as returns."""
    echeck = sale(forte_state, "trn_late", 44, echeck=True, received_date=forte_date(6))
    webhook_for(settings, echeck)
    run_worker()
    assert sandbox_state.invoices[44]["PaidOn"] is None  # ready: pending
    echeck["status"] = "funded"
    forte_state.settlements.append(
        settlement_record(echeck, settle_type="deposit", settle_date=forte_date())
    )

    assert counts(reconcile(settings, redis, last(hours=3 * 24))) == (1, 0, 1, "ok")
    run_worker()

    assert sandbox_state.invoices[44]["PaidOn"] is not None
    assert stages(redis, "forte:trn_late:funded:listed")[-1] == "applied"
    assert counts(reconcile(settings, redis, last(hours=3 * 24))) == (1, 1, 0, "ok")
