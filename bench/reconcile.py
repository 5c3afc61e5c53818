"""Reconcile benchmark (issue 19): a 30-day window of provider events, 99% already seen.

Stripe's stand-in lists ``--events`` payment events spread over the last 30 days; all but
``--new`` of them were recorded before, by their webhooks (queued as the receiver queues
them, on a queue of their own no worker drains: reconciliation asks only whether an event
was recorded, so whether its job has run yet changes nothing here). Then the scan
`payhooks reconcile stripe --since 30d` runs (the same lister, cursor and record-once
hand-off), and a real RQ worker applies what it queued to the Nexudus sandbox. Measured:

- wall time of the scan (thorough: every event; quick: ``delivery_success=false``);
- provider API calls per event, counted by the stand-in (paging only: no per-event GET);
- Redis round trips per event, counted twice: by the scan itself
  (``ScanCounts.redis_round_trips``) and by the Redis client's connection (each
  ``send_packed_command`` is one round trip: a pipeline is one), which must agree; plus
  the commands Redis ran, from the deltas of ``INFO commandstats``;
- Nexudus calls: those the scan caused (0: it only queues) and those the worker made
  applying the new events (per new event).

A second thorough scan of the same window (everything seen now) shows the steady state.

Usage: python -m bench.reconcile [--events 10000] [--new 100]
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from aiohttp import web
from redis import Connection, Redis
from rq import Queue, SimpleWorker

from payhooks.devtools.embedded_redis import EmbeddedRedis
from payhooks.devtools.samples.deliver import deliver_bodies
from payhooks.devtools.sandbox import add_stand_ins
from payhooks.devtools.sandbox.nexudus import SandboxState, create_sandbox_app, invoice_record
from payhooks.devtools.sandbox.server import ThreadedServer
from payhooks.providers.kit.listing import Window
from payhooks.providers.stripe import sample as samples
from payhooks.providers.stripe.lister import StripeLister
from payhooks.providers.stripe.settings import StripeSettings
from payhooks.providers.stripe.stand_in import API_KEY, StripeState
from payhooks.settings import Settings
from payhooks.storage import redis_connect
from payhooks.storage.jobs import JobFactory
from payhooks.storage.record_once import RecordOnce
from workers import context
from workers.reconcile import ScanCounts, WindowCursor, scan

DAYS = 30
#: Where the events seen before were queued: a queue no worker of the bench drains.
EARLIER_QUEUE = "bench-earlier"
FIRST_INVOICE = 100_000


class RoundTrips:
    """Redis round trips as the client makes them: one per packed send (a pipeline's
    commands go out in one send, and their answers are read before the next)."""

    def __init__(self) -> None:
        self.count = 0

    def client(self, settings: Settings) -> Redis:
        counter = self

        class Counting(Connection):
            def send_packed_command(self, command: Any, check_health: bool = True) -> None:
                counter.count += 1
                super().send_packed_command(command, check_health)  # type: ignore[no-untyped-call]

        client = redis_connect.sync_client(settings, connection_class=Counting)
        client.ping()  # the connection's handshake is not the scan's
        self.count = 0
        return client


def command_calls(redis: Redis) -> dict[str, int]:
    """Commands Redis has run, by name (``INFO commandstats``)."""
    stats: dict[str, Any] = redis.info("commandstats")
    return {name.removeprefix("cmdstat_"): int(value["calls"]) for name, value in stats.items()}


@dataclass
class ScanFigures:
    seconds: float
    counts: ScanCounts
    api_calls: int
    client_round_trips: int
    redis_commands: int
    nexudus_calls: int


def bench_settings(redis_url: str, sandbox_url: str, state: SandboxState) -> Settings:
    return Settings(
        redis_url=redis_url,
        nexudus_base_url=sandbox_url,
        nexudus_username=state.username,
        nexudus_password=state.password,
        nexudus_writes_per_minute=100_000,
        nexudus_calls_per_minute=100_000,
        nexudus_min_interval_ms=0,
        providers=(
            StripeSettings(
                webhook_secrets=(samples.DEV_WEBHOOK_SECRET,),
                allow_test_mode=True,
                api_key=API_KEY,
                api_base=sandbox_url,
            ),
        ),
    )


def stripe_events(
    stripe: StripeState, sandbox: SandboxState, events: int, new: int, now: float
) -> list[bytes]:
    """``events`` payment events over the last 30 days; the bodies of those seen before
    (every one but ``new`` of them, spread evenly), whose webhooks came."""
    step = DAYS * 86400 / events
    every = events // new if new else events + 1
    seen = []
    for n in range(events):
        intent = samples.payment_intent(
            invoice_id=FIRST_INVOICE + n, amount=Decimal("100.00"), currency="EUR"
        )
        event = samples.event("payment_intent.succeeded", intent, livemode=False)
        event["created"] = int(now - DAYS * 86400 + 60 + n * step)
        stripe.events.append(event)
        if new and n % every == every - 1 and n // every < new:
            stripe.undelivered.add(event["id"])
            stripe.payment_intents[intent["id"]] = intent
            sandbox.invoices[FIRST_INVOICE + n] = invoice_record(FIRST_INVOICE + n)
        else:
            seen.append(json.dumps(event).encode())
    return seen


def measure(
    settings: Settings,
    redis: Redis,
    trips: RoundTrips,
    stripe: StripeState,
    sandbox: SandboxState,
    window: Window,
    *,
    thorough: bool,
) -> ScanFigures:
    lister = StripeLister.from_settings(settings)
    record = RecordOnce(JobFactory(settings), event_ttl_seconds=settings.event_ttl_seconds)
    place = WindowCursor(redis, "stripe", window, ttl_seconds=86400)
    api_before, nexudus_before = len(stripe.requests), len(sandbox.calls)
    commands_before = command_calls(redis)
    trips.count = 0
    started = time.perf_counter()
    counts = scan(lister, window, place, redis, record, thorough=thorough)
    seconds = time.perf_counter() - started
    client_round_trips = trips.count
    commands = command_calls(redis)
    commands.pop("info", None)
    commands_before.pop("info", None)
    return ScanFigures(
        seconds=seconds,
        counts=counts,
        api_calls=len(stripe.requests) - api_before,
        client_round_trips=client_round_trips,
        redis_commands=sum(commands.values()) - sum(commands_before.values()),
        nexudus_calls=len(sandbox.calls) - nexudus_before,
    )


def run(events: int, new: int) -> dict[str, Any]:
    """The figures of one run (see the module's docstring)."""
    with EmbeddedRedis() as redis_server:
        sandbox = SandboxState(writes_per_minute=100_000, calls_per_minute=100_000)
        stripe = StripeState()

        def make() -> web.Application:
            app = create_sandbox_app(sandbox)
            add_stand_ins(app, {"stripe": stripe})
            return app

        server = ThreadedServer(make).start()
        try:
            settings = bench_settings(redis_server.url, server.url, sandbox)
            now = time.time()
            seen = stripe_events(stripe, sandbox, events, new, now)
            earlier = replace(settings, queue_name=EARLIER_QUEUE)
            for start in range(0, len(seen), 500):
                deliver_bodies(earlier, "stripe", seen[start : start + 500])
            trips = RoundTrips()
            redis = trips.client(settings)
            window = Window(
                datetime.fromtimestamp(int(now) - DAYS * 86400, tz=UTC),
                datetime.fromtimestamp(int(now) + 1, tz=UTC),
            )
            figures = {
                "quick": measure(settings, redis, trips, stripe, sandbox, window, thorough=False),
            }
            # The quick scan queued the new ones: flush them so the thorough scan finds them.
            redis.flushall()
            deliver_bodies(earlier, "stripe", seen)
            figures["thorough"] = measure(
                settings, redis, trips, stripe, sandbox, window, thorough=True
            )
            applied = apply(settings, redis, sandbox)
            figures["again"] = measure(
                settings, redis, trips, stripe, sandbox, window, thorough=True
            )
            redis.close()
        finally:
            server.stop()
    return {"events": events, "new": new, "scans": figures, "applied": applied}


def apply(settings: Settings, redis: Redis, sandbox: SandboxState) -> dict[str, float]:
    """A real worker applies what the scan queued; the Nexudus calls it made."""
    ctx = context.build_context(settings)
    previous = context.install(ctx)
    before = len(sandbox.calls)
    try:
        SimpleWorker([Queue(settings.queue_name, connection=redis)], connection=redis).work(
            burst=True, logging_level="WARNING"
        )
    finally:
        context.install(previous)
        ctx.close()
    calls = sandbox.calls[before:]
    paid = sum(1 for n, record in sandbox.invoices.items() if n >= FIRST_INVOICE and record["Paid"])
    return {
        "paid": paid,
        "calls": sum(1 for c in calls if c.status == 200),
        "writes": sum(1 for c in calls if c.status == 200 and c.write),
    }


def report(result: dict[str, Any]) -> None:
    events, new = result["events"], result["new"]
    print(
        f"\nReconcile: Stripe, {events} events over {DAYS} days, {events - new} seen before "
        f"({platform.machine()}, {platform.python_implementation()} "
        f"{platform.python_version()})"
    )
    print(
        f"{'scan':<10} {'seconds':>8} {'queued':>7} {'seen':>6} {'pages':>6} "
        f"{'API/event':>10} {'RT/event':>9} {'RT client':>10} {'cmds/event':>11} {'Nexudus':>8}"
    )
    for name, f in result["scans"].items():
        c = f.counts
        print(
            f"{name:<10} {f.seconds:>8.2f} {c.queued:>7} {c.seen:>6} {c.pages:>6} "
            f"{f.api_calls / c.scanned if c.scanned else 0:>10.4f} "
            f"{c.redis_round_trips / c.scanned if c.scanned else 0:>9.4f} "
            f"{f.client_round_trips:>10} "
            f"{f.redis_commands / c.scanned if c.scanned else 0:>11.2f} {f.nexudus_calls:>8}"
        )
    applied = result["applied"]
    print(
        f"worker: {applied['paid']} invoices paid; {applied['calls']} Nexudus calls "
        f"({applied['calls'] / max(new, 1):.2f} per new event, "
        f"{applied['writes'] / max(new, 1):.2f} writes); 0 for the events seen before"
    )
    print(
        "quick: delivery_success=false lists only the undelivered; thorough: every event; "
        "again: the thorough scan rerun once the new ones were applied.\n"
        "RT/event: the scan's own count of Redis round trips; RT client: counted by the "
        "client's connection (must equal the scan's); cmds: Redis commands (INFO commandstats)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--new", type=int, default=None, help="default: 1%% of --events")
    args = parser.parse_args()
    new = args.new if args.new is not None else max(args.events // 100, 1)
    report(run(args.events, new))


if __name__ == "__main__":
    main()
