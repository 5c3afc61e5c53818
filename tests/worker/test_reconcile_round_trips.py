"""A reconcile scan's Redis round trips (issue 19's benchmark): one seen-before check and
one record-once batch per page, never one per event, and ``ScanCounts`` says exactly how
many it made, as the Redis client's own connection counts them (bench/reconcile.py).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from redis import Redis

from bench.reconcile import RoundTrips
from bench.reconcile import run as run_bench
from payhooks.devtools.samples.deliver import deliver_bodies
from payhooks.providers.kit.listing import Window
from payhooks.providers.stripe import sample as samples
from payhooks.providers.stripe.lister import StripeLister
from payhooks.providers.stripe.settings import StripeSettings
from payhooks.providers.stripe.stand_in import API_KEY, StripeState
from payhooks.settings import Settings
from payhooks.storage.jobs import JobFactory
from payhooks.storage.record_once import RecordOnce
from tests.support.settings import with_section
from workers.reconcile import WindowCursor, scan


def test_a_scan_counts_its_round_trips_honestly_and_pipelines_each_page(
    settings: Settings, sandbox: Any, redis: Redis, stripe_state: StripeState
) -> None:
    settings = with_section(
        settings, StripeSettings, api_key=API_KEY, api_base=sandbox.url, allow_test_mode=True
    )
    now = datetime.now(tz=UTC).replace(microsecond=0)
    bodies = []
    for n in range(250):
        intent = samples.payment_intent(invoice_id=1000 + n, amount=Decimal("10.00"))
        event = samples.event("payment_intent.succeeded", intent, livemode=False)
        event["created"] = int(now.timestamp()) - n
        stripe_state.events.append(event)
        bodies.append(json.dumps(event).encode())
    deliver_bodies(settings, "stripe", bodies[10:])  # all but 10 came by webhook
    trips = RoundTrips()
    counted = trips.client(settings)
    window = Window(now - timedelta(hours=1), now + timedelta(seconds=5))
    record = RecordOnce(JobFactory(settings), event_ttl_seconds=settings.event_ttl_seconds)
    redis.script_flush()  # as after a Redis restart: the batch loads the script first

    done = scan(
        StripeLister.from_settings(settings),
        window,
        WindowCursor(counted, "stripe", window, ttl_seconds=60),
        counted,
        record,
        thorough=True,
    )
    counted.close()

    assert (done.scanned, done.seen, done.queued) == (250, 240, 10)
    assert done.pages == 4  # 3 pages of the first group of types, 1 (empty) of the second
    assert done.redis_round_trips == trips.count
    # The cursor's read and finish; per page a check and a commit; the one batch that
    # queued the 10 new events, with the script's load (2 more).
    assert trips.count == 2 + 2 * 3 + 1 + 3


def test_the_reconcile_bench_runs() -> None:
    result = run_bench(events=100, new=1)

    for provider, pages in (("stripe", 2), ("gocardless", 2)):
        figures = result["providers"][provider]
        thorough = figures["scans"]["thorough"]
        assert (thorough.counts.seen, thorough.counts.queued) == (99, 1), provider
        assert thorough.api_calls == thorough.counts.pages == pages, provider
        assert thorough.nexudus_calls == 0
        assert figures["applied"]["paid"] == 1
        again = figures["scans"]["again"]
        assert (again.counts.seen, again.counts.queued, again.nexudus_calls) == (100, 0, 0)
        for scanned in figures["scans"].values():
            assert scanned.counts.redis_round_trips == scanned.client_round_trips
