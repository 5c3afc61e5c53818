"""Spreedly purchases that succeed after every reconcile window has passed them.

Spreedly lists transactions by creation time only, and the thorough scan reads back 3
days: a purchase created pending (offsite, 3-D Secure, ACH) that succeeds 5 days later,
its callback lost, is listed by no later scan. A scan that lists it pending watches it
(payhooks/storage/pending_watch.py) and later scans read it back by itself, with the
job's own lookup, from the stand-in over loopback; a real RQ worker applies the result to
the Nexudus sandbox.

Time is moved by the scans' clock (``scheduled_scan``'s ``now``), never slept: the first
scan runs "5 days ago", when the purchase was made, the next one now.

Fixture: tests/fixtures/spreedly/pending_purchase.json, the pending purchase of Spreedly's
"Syncing your gateway transaction" guide (its ``_source`` names the page).
"""

from __future__ import annotations

import json
import logging
import time
from datetime import UTC, datetime
from typing import Any

import pytest
from redis import Redis
from rq import Queue, SimpleWorker

from payhooks.cli.ops import Ops
from payhooks.cli.reconcile import reconcile_providers
from payhooks.cli.unprocessed import UnprocessedWebhooks
from payhooks.devtools.sandbox.nexudus import SandboxState, invoice_record
from payhooks.providers.kit.listing import Window
from payhooks.providers.kit.step_errors import ProviderLookupUnavailable
from payhooks.providers.spreedly import sample as samples
from payhooks.providers.spreedly.lister import SpreedlyLister
from payhooks.providers.spreedly.stand_in import SpreedlyState
from payhooks.settings import Settings
from payhooks.storage import redis_keys
from payhooks.storage.jobs import JobFactory
from payhooks.storage.pending_watch import PendingWatch
from payhooks.storage.record_once import RecordOnce
from payhooks.storage.task_lease import TaskLease
from payhooks.storage.trail import StoredPoll, Trail
from payhooks.storage.unprocessed import READ_BY_LIST, queue_keep
from payhooks.storage.worker_metrics import RECONCILED_EVENTS, WorkerMetrics
from tests.support.delivery import deliver, writes
from tests.support.paths import FIXTURES
from workers.reconcile import ScanCounts, reconcile_task, scheduled_scan

PUBLISHED = json.loads((FIXTURES / "spreedly" / "pending_purchase.json").read_text())
TOKEN = PUBLISHED["transaction"]["token"]
INVOICE = int(PUBLISHED["transaction"]["order_id"])
DAY = 86400.0
#: When the purchase was made (and first scanned): 5 days and an hour ago.
MADE = time.time() - 5 * DAY - 3600


def stamp(at: float) -> str:
    return f"{datetime.fromtimestamp(at, tz=UTC):%Y-%m-%dT%H:%M:%SZ}"


@pytest.fixture
def pending(spreedly_state: SpreedlyState, sandbox_state: SandboxState) -> dict[str, Any]:
    """Spreedly's published pending purchase, made 5 days ago, of a 1.00 USD invoice (its
    request's amount, in cents)."""
    sandbox_state.invoices[INVOICE] = invoice_record(INVOICE, CurrencyCode="USD", TotalAmount=1.0)
    record = {**PUBLISHED["transaction"], "amount": 100, "currency_code": "USD"}
    record["created_at"] = record["updated_at"] = stamp(MADE)
    spreedly_state.transactions[TOKEN] = record
    return record


def settle(record: dict[str, Any], state: str) -> None:
    """Spreedly's record once the gateway has told it (now)."""
    record.update(state=state, succeeded=state == "succeeded", updated_at=stamp(time.time()))


def scheduled(settings: Settings, redis: Redis, at: float) -> ScanCounts:
    """One run of the scheduled thorough scan, its clock at ``at``."""
    task = reconcile_task("spreedly", thorough=True)
    lease = TaskLease(redis, task, seconds=10, cursor_ttl_seconds=60)
    assert lease.acquire()
    try:
        return scheduled_scan(
            SpreedlyLister.from_settings(settings),
            lease,
            redis,
            RecordOnce(JobFactory(settings), event_ttl_seconds=settings.event_ttl_seconds),
            WorkerMetrics(redis),
            thorough=True,
            seconds=settings.reconcile_full_window_seconds,
            pending_days=settings.reconcile_pending_days,
            now=lambda: at,
        )
    finally:
        lease.release()


def drain(redis: Redis, settings: Settings) -> None:
    SimpleWorker([Queue(settings.queue_name, connection=redis)], connection=redis).work(burst=True)


def watched(redis: Redis, settings: Settings) -> list[str]:
    days = settings.reconcile_pending_days
    cap = SpreedlyLister.most_pending
    return PendingWatch(redis, "spreedly", max_age_seconds=int(days * DAY), cap=cap).watched()


def stages(redis: Redis, event_key: str) -> list[str]:
    return [str(e["stage"]) for e in Trail(redis, ttl_seconds=60).history(event_key)]


def made_pending_and_scanned(settings: Settings, redis: Redis, state: SpreedlyState) -> ScanCounts:
    """The scan of the day the purchase was made lists it pending (and watches it)."""
    first = scheduled(settings, redis, MADE + 60)
    assert (first.scanned, first.queued) == (1, 1)  # its pending event
    drain(redis, settings)
    assert state.lookups == 1  # the pending event's job confirmed it: nothing read back
    return first


def test_a_purchase_that_succeeds_after_every_window_is_applied_once(
    settings: Settings,
    redis: Redis,
    worker_context: Any,
    sandbox_state: SandboxState,
    spreedly_state: SpreedlyState,
    pending: dict[str, Any],
) -> None:
    first = made_pending_and_scanned(settings, redis, spreedly_state)
    assert sandbox_state.invoices[INVOICE]["Paid"] is False
    settle(pending, "succeeded")  # 5 days on; the callback is lost

    now = scheduled(settings, redis, time.time())

    drain(redis, settings)
    assert sandbox_state.invoices[INVOICE]["Paid"] is True
    # Outside the window (the last 3 days): not listed, read back by itself.
    assert [r for r in spreedly_state.requests if "since_token" in r] == []
    assert (now.scanned, now.read_back, now.queued, now.seen) == (1, 1, 1, 0)
    assert first.read_back == 0  # listed in its own window: not read back as well
    assert watched(redis, settings) == []
    assert len(writes(sandbox_state, "PUT")) == 1  # the invoice's, once
    key = f"spreedly:{TOKEN}:succeeded"  # as its callback's event is keyed
    assert stages(redis, key)[:2] == ["polled", "enqueued"]
    assert stages(redis, key)[-1] == "applied"

    lookups = spreedly_state.lookups
    again = scheduled(settings, redis, time.time() + 60)
    assert (again.read_back, again.queued) == (0, 0)  # forgotten: never asked again
    assert spreedly_state.lookups == lookups


def test_one_a_later_window_lists_settled_is_forgotten_without_a_lookup(
    settings: Settings,
    redis: Redis,
    worker_context: Any,
    sandbox_state: SandboxState,
    spreedly_state: SpreedlyState,
    pending: dict[str, Any],
) -> None:
    made_pending_and_scanned(settings, redis, spreedly_state)
    settle(pending, "succeeded")  # within the hour: its window still lists it

    later = scheduled(settings, redis, MADE + 3600)

    assert (later.scanned, later.queued, later.read_back) == (1, 1, 0)
    assert watched(redis, settings) == []  # its event recorded, so forgotten
    assert spreedly_state.lookups == 1  # the pending event's job's only
    drain(redis, settings)
    assert sandbox_state.invoices[INVOICE]["Paid"] is True


def test_its_callback_arriving_too_means_one_nexudus_write(
    settings: Settings,
    redis: Redis,
    worker_context: Any,
    sandbox_state: SandboxState,
    spreedly_state: SpreedlyState,
    pending: dict[str, Any],
) -> None:
    made_pending_and_scanned(settings, redis, spreedly_state)
    settle(pending, "succeeded")
    callback = samples.callback(
        samples.transaction_xml(samples.values_for(pending), samples.DEV_SIGNING_SECRET)
    )
    assert [a.value for a in deliver(settings, "spreedly", callback)] == ["queued"]

    now = scheduled(settings, redis, time.time())

    assert (now.seen, now.queued) == (1, 0)  # read back: the callback's event
    assert now.read_back == 1
    assert watched(redis, settings) == []
    drain(redis, settings)
    assert sandbox_state.invoices[INVOICE]["Paid"] is True
    assert len(writes(sandbox_state, "PUT")) == 1  # the invoice's, once
    assert stages(redis, f"spreedly:{TOKEN}:succeeded")[:2] == ["received", "enqueued"]


def test_a_purchase_that_fails_is_forgotten_and_nothing_is_written(
    settings: Settings,
    redis: Redis,
    worker_context: Any,
    sandbox_state: SandboxState,
    spreedly_state: SpreedlyState,
    pending: dict[str, Any],
) -> None:
    made_pending_and_scanned(settings, redis, spreedly_state)
    written = writes(sandbox_state)
    settle(pending, "gateway_processing_failed")

    now = scheduled(settings, redis, time.time())

    assert now.queued == 1  # read back: its failed event, as a callback's
    assert now.read_back == 1
    assert watched(redis, settings) == []
    drain(redis, settings)
    assert writes(sandbox_state) == written
    assert sandbox_state.invoices[INVOICE]["Paid"] is False
    lookups = spreedly_state.lookups
    assert scheduled(settings, redis, time.time() + 60).read_back == 0
    assert spreedly_state.lookups == lookups


def test_a_scan_stopped_between_reading_and_recording_loses_nothing(
    settings: Settings,
    redis: Redis,
    worker_context: Any,
    sandbox_state: SandboxState,
    spreedly_state: SpreedlyState,
    pending: dict[str, Any],
) -> None:
    # A second pending purchase, made a minute later, of invoice 42 (100.00 EUR).
    other = {
        **pending,
        "token": "SecondPendingPurchase000001",
        "order_id": "42",
        "amount": 10000,
        "currency_code": "EUR",
        "created_at": stamp(MADE + 60),
    }
    spreedly_state.transactions[other["token"]] = other
    first = scheduled(settings, redis, MADE + 120)
    assert first.queued == 2
    settle(pending, "succeeded")
    settle(other, "succeeded")
    # The first is read back, the second's lookup answers 503: the scan stops unrecorded.
    spreedly_state.lookup_faults = [200, 503]
    with pytest.raises(ProviderLookupUnavailable):
        scheduled(settings, redis, time.time())
    assert watched(redis, settings) == [TOKEN, other["token"]]
    for token in (TOKEN, other["token"]):
        assert stages(redis, f"spreedly:{token}:succeeded") == []

    now = time.time()
    window = Window(datetime.fromtimestamp(now - 7200, tz=UTC), datetime.fromtimestamp(now, tz=UTC))
    # A dry run reads them back and counts them, and writes nothing.
    [dry] = reconcile_providers(settings, redis, window, ["spreedly"], dry_run=True)
    assert (dry["result"], dry["queued"], dry["read_back"], dry["given_up"]) == ("ok", 2, 2, 0)
    assert watched(redis, settings) == [TOKEN, other["token"]]
    assert stages(redis, f"spreedly:{TOKEN}:succeeded") == []

    # The next scan (`payhooks reconcile` here) finds both; a 429 is waited out.
    spreedly_state.lookup_faults = [429]
    waits: list[float] = []
    [row] = reconcile_providers(settings, redis, window, ["spreedly"], sleep=waits.append)
    assert (row["result"], row["queued"], row["seen"], row["read_back"]) == ("ok", 2, 0, 2)
    assert waits == [1.0]
    assert watched(redis, settings) == []
    drain(redis, settings)
    assert sandbox_state.invoices[INVOICE]["Paid"] is True
    assert sandbox_state.invoices[42]["Paid"] is True
    for token in (TOKEN, other["token"]):
        assert stages(redis, f"spreedly:{token}:succeeded").count("enqueued") == 1


def test_the_watch_is_bounded_by_age_and_by_count(
    settings: Settings,
    redis: Redis,
    spreedly_state: SpreedlyState,
    pending: dict[str, Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    scheduled(settings, redis, MADE + 60)
    assert watched(redis, settings) == [TOKEN]
    key = redis_keys.reconcile_pending("spreedly")
    assert 0 < redis.ttl(key) <= 2 * settings.reconcile_pending_days * DAY

    # Still pending 30 days on (read back once more to say so): given up, told, forgotten.
    lookups = spreedly_state.lookups
    with caplog.at_level(logging.WARNING, logger="payhooks.reconcile"):
        late = scheduled(settings, redis, MADE + settings.reconcile_pending_days * DAY + 60)
    assert (late.given_up, late.read_back) == (1, 1)
    assert spreedly_state.lookups == lookups + 1
    assert watched(redis, settings) == []
    [told] = [r for r in caplog.records if r.getMessage() == "reconcile.pending_given_up"]
    assert told.transactions == [TOKEN]  # type: ignore[attr-defined]
    assert redis.hget(RECONCILED_EVENTS, "spreedly|given_up") == b"1"  # alerted on

    # At most ``cap`` watched: the oldest go first, named for the log.
    watch = PendingWatch(redis, "spreedly", max_age_seconds=int(30 * DAY), cap=3)
    now = time.time()
    dropped = watch.remember([(f"Token{n}", now - 100 + n) for n in range(5)], now=now)
    assert dropped == ["Token0", "Token1"]
    assert watch.watched() == ["Token2", "Token3", "Token4"]
    # One already too old is not watched at all.
    assert watch.remember([("Ancient", now - 31 * DAY)], now=now) == []
    assert "Ancient" not in watch.watched()


def test_a_watched_purchase_spreedly_no_longer_knows_is_an_error_and_forgotten(
    settings: Settings,
    redis: Redis,
    spreedly_state: SpreedlyState,
    pending: dict[str, Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    scheduled(settings, redis, MADE + 60)
    del spreedly_state.transactions[TOKEN]  # its lookup answers 404

    with caplog.at_level(logging.WARNING, logger="payhooks.reconcile"):
        now = scheduled(settings, redis, time.time())

    assert (now.errors, now.queued) == (1, 0)  # not a success: the stale alert can tell
    assert watched(redis, settings) == []
    [told] = [r for r in caplog.records if r.getMessage() == "reconcile.pending_unknown"]
    assert told.transaction == TOKEN  # type: ignore[attr-defined]


def test_one_listed_pending_already_past_the_pending_days_is_given_up_out_loud(
    settings: Settings,
    redis: Redis,
    spreedly_state: SpreedlyState,
    pending: dict[str, Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A scan by hand over a window reaching back further than RECONCILE_PENDING_DAYS (as
    the README's upgrade step runs one) lists a purchase still pending that no later scan
    will follow: given up as one that aged while watched is, never silently."""
    made = time.time() - (settings.reconcile_pending_days + 1) * DAY
    pending["created_at"] = pending["updated_at"] = stamp(made)
    window = Window(
        datetime.fromtimestamp(made - 3600, tz=UTC), datetime.fromtimestamp(time.time(), tz=UTC)
    )

    with caplog.at_level(logging.WARNING, logger="payhooks.reconcile"):
        [row] = reconcile_providers(settings, redis, window, ["spreedly"])

    assert (row["scanned"], row["queued"]) == (1, 1)  # its pending event
    assert watched(redis, settings) == []
    [told] = [r for r in caplog.records if r.getMessage() == "reconcile.pending_given_up"]
    assert told.transactions == [TOKEN]  # type: ignore[attr-defined]
    assert redis.hget(RECONCILED_EVENTS, "spreedly|given_up") == b"1"  # alerted on


def test_one_that_succeeds_just_before_the_pending_days_end_is_applied_not_given_up(
    settings: Settings,
    redis: Redis,
    worker_context: Any,
    sandbox_state: SandboxState,
    spreedly_state: SpreedlyState,
    pending: dict[str, Any],
) -> None:
    """The last scan before RECONCILE_PENDING_DAYS read it back pending; it succeeded
    before the next scan, which finds it past its age: read back once more, it is applied
    (its callback lost), not given up as still pending with its invoice left unpaid."""
    made_pending_and_scanned(settings, redis, spreedly_state)
    limit = MADE + settings.reconcile_pending_days * DAY
    assert scheduled(settings, redis, limit - 60).read_back == 1  # still pending
    settle(pending, "succeeded")

    late = scheduled(settings, redis, limit + 60)

    assert (late.read_back, late.queued, late.given_up) == (1, 1, 0)
    assert watched(redis, settings) == []
    drain(redis, settings)
    assert sandbox_state.invoices[INVOICE]["Paid"] is True


def test_a_pending_purchase_a_scan_could_not_read_is_followed_once_replayed(
    settings: Settings,
    redis: Redis,
    worker_context: Any,
    sandbox_state: SandboxState,
    spreedly_state: SpreedlyState,
    pending: dict[str, Any],
) -> None:
    """Kept as unprocessed by a scan whose code could not read it, and replayed by hand
    once this code reads it (after every window has passed it): watched then as the scan
    would have watched it, so that its success, its callback lost, is still applied."""
    with redis.pipeline() as pipe:
        queue_keep(
            pipe,
            StoredPoll.of("spreedly", json.dumps(pending).encode(), None),
            "MalformedPayload in payhooks/providers/spreedly/lister.py:1 (x)",
            ttl_seconds=600,
            now=MADE + 60,
            read_by=READ_BY_LIST,
        )
        pipe.execute()
    kept_ones = UnprocessedWebhooks(Ops(settings, redis))
    [kept] = kept_ones.listed()

    replayed, lines = kept_ones.replay(kept)

    assert replayed, lines
    assert watched(redis, settings) == [TOKEN]
    assert lines[-1].endswith("still open: reconcile scans read it back")
    drain(redis, settings)  # its pending event: nothing paid
    settle(pending, "succeeded")
    now = scheduled(settings, redis, time.time())
    assert (now.read_back, now.queued) == (1, 1)
    drain(redis, settings)
    assert sandbox_state.invoices[INVOICE]["Paid"] is True
