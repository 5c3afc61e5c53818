"""Reconcile benchmark (issue 19): a 30-day window of provider events, 99% already seen.

Stripe's stand-in (then GoCardless's) lists ``--events`` payment events spread over the
last 30 days; all but ``--new`` of them were recorded before, by their webhooks (queued as
the receiver queues them, on a queue of their own no worker drains: reconciliation asks
only whether an event was recorded, so whether its job has run yet changes nothing here).
Then the scan `payhooks reconcile <provider> --since 30d` runs (the same lister, cursor and
record-once hand-off), and a real RQ worker applies what it queued to the Nexudus sandbox.
Measured:

- wall time of the scan (thorough: every event; for Stripe also quick:
  ``delivery_success=false``);
- provider API calls per event, counted by the stand-in (paging only: no per-event GET);
- Redis round trips per event, counted twice: by the scan itself
  (``ScanCounts.redis_round_trips``) and by the Redis client's connection (each
  ``send_packed_command`` is one round trip: a pipeline is one), which must agree; plus
  the commands Redis ran, from the deltas of ``INFO commandstats``;
- Nexudus calls: those the scan caused (0: it only queues) and those the worker made
  applying the new events (per new event).

A second thorough scan of the same window (everything seen now) shows the steady state.

Usage: python -m bench.reconcile [--events 10000] [--new 100] [--providers stripe,gocardless]
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from aiohttp import web
from redis import Connection, Redis
from rq import Queue, SimpleWorker

from payhooks.devtools.embedded_redis import EmbeddedRedis
from payhooks.devtools.samples.deliver import deliver_bodies
from payhooks.devtools.sandbox import add_stand_ins
from payhooks.devtools.sandbox.nexudus import SandboxState, create_sandbox_app, invoice_record
from payhooks.devtools.sandbox.server import ThreadedServer
from payhooks.providers.gocardless.settings import GoCardlessSettings
from payhooks.providers.gocardless.stand_in import ACCESS_TOKEN as GOCARDLESS_TOKEN
from payhooks.providers.gocardless.stand_in import GoCardlessState, payment_record
from payhooks.providers.kit.listing import Window
from payhooks.providers.listers import build_listers
from payhooks.providers.stripe import sample as samples
from payhooks.providers.stripe.settings import StripeSettings
from payhooks.providers.stripe.stand_in import API_KEY as STRIPE_KEY
from payhooks.providers.stripe.stand_in import StripeState
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
FIXTURES = Path(__file__).resolve().parent.parent / "tests" / "fixtures"


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
                api_key=STRIPE_KEY,
                api_base=sandbox_url,
            ),
            GoCardlessSettings(
                webhook_secrets=("bench-gocardless-secret",),
                access_token=GOCARDLESS_TOKEN,
                base_url=sandbox_url,
            ),
        ),
    )


def is_new(n: int, events: int, new: int) -> bool:
    """Whether the ``n``th event is one of the ``new`` (spread evenly) no webhook brought."""
    every = events // new if new else events + 1
    return bool(new) and n % every == every - 1 and n // every < new


def stripe_events(stand_ins: StandIns, events: int, new: int, now: float) -> list[bytes]:
    """``events`` payment events over the last 30 days; the webhook bodies of those seen
    before."""
    step = DAYS * 86400 / events
    seen = []
    for n in range(events):
        invoice_id = FIRST_INVOICE + n
        intent = samples.payment_intent(invoice_id=invoice_id, amount=Decimal("100.00"))
        event = samples.event("payment_intent.succeeded", intent, livemode=False)
        event["created"] = int(now - DAYS * 86400 + 60 + n * step)
        stand_ins.stripe.events.append(event)
        if is_new(n, events, new):
            stand_ins.stripe.undelivered.add(event["id"])
            stand_ins.stripe.payment_intents[intent["id"]] = intent
            stand_ins.nexudus.invoices[invoice_id] = invoice_record(invoice_id)
        else:
            seen.append(json.dumps(event).encode())
    return seen


def gocardless_events(stand_ins: StandIns, events: int, new: int, now: float) -> list[bytes]:
    """The same for GoCardless: its API reference's "List events" example event, once per
    payment, created over the last 30 days; seen ones came in webhooks of 100 events."""
    published = json.loads((FIXTURES / "gocardless_list_events.json").read_text())["events"][0]
    step = DAYS * 86400 / events
    seen: list[dict[str, Any]] = []
    for n in range(events):
        invoice_id = FIRST_INVOICE + events + n
        created = datetime.fromtimestamp(now - DAYS * 86400 + 60 + n * step, tz=UTC)
        event = {
            **published,
            "id": f"EV{n:08d}",
            "created_at": created.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z",
            "links": {"payment": f"PM{n:08d}"},
        }
        stand_ins.gocardless.events.append(event)
        if is_new(n, events, new):
            stand_ins.gocardless.payments[f"PM{n:08d}"] = payment_record(
                f"PM{n:08d}", amount_minor=10000, currency="EUR", invoice_id=invoice_id
            )
            stand_ins.nexudus.invoices[invoice_id] = invoice_record(invoice_id)
        else:
            seen.append(event)
    return [json.dumps({"events": seen[n : n + 100]}).encode() for n in range(0, len(seen), 100)]


@dataclass
class StandIns:
    nexudus: SandboxState
    stripe: StripeState
    gocardless: GoCardlessState

    def api_calls(self, provider: str) -> int:
        if provider == "stripe":
            return len(self.stripe.requests)
        return len(self.gocardless.event_requests) + self.gocardless.lookups


def measure(
    settings: Settings,
    redis: Redis,
    trips: RoundTrips,
    stand_ins: StandIns,
    provider: str,
    window: Window,
    *,
    thorough: bool,
) -> ScanFigures:
    [lister] = build_listers(settings, [provider])[0].values()
    record = RecordOnce(JobFactory(settings), event_ttl_seconds=settings.event_ttl_seconds)
    place = WindowCursor(redis, provider, window, ttl_seconds=86400)
    api_before, nexudus_before = stand_ins.api_calls(provider), len(stand_ins.nexudus.calls)
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
        api_calls=stand_ins.api_calls(provider) - api_before,
        client_round_trips=client_round_trips,
        redis_commands=sum(commands.values()) - sum(commands_before.values()),
        nexudus_calls=len(stand_ins.nexudus.calls) - nexudus_before,
    )


EVENTS_OF = {"stripe": stripe_events, "gocardless": gocardless_events}


def run(events: int, new: int, providers: tuple[str, ...] = ("stripe", "gocardless")) -> Any:
    """The figures of one run, by provider (see the module's docstring)."""
    results: dict[str, Any] = {}
    with EmbeddedRedis() as redis_server:
        stand_ins = StandIns(
            SandboxState(writes_per_minute=100_000, calls_per_minute=100_000),
            StripeState(),
            GoCardlessState(),
        )

        def make() -> web.Application:
            app = create_sandbox_app(stand_ins.nexudus)
            add_stand_ins(app, {"stripe": stand_ins.stripe, "gocardless": stand_ins.gocardless})
            return app

        server = ThreadedServer(make).start()
        try:
            settings = bench_settings(redis_server.url, server.url, stand_ins.nexudus)
            trips = RoundTrips()
            redis = trips.client(settings)
            for provider in providers:
                redis.flushall()
                results[provider] = run_one(
                    settings, redis, trips, stand_ins, provider, events, new
                )
            redis.close()
        finally:
            server.stop()
    return {"events": events, "new": new, "providers": results}


def run_one(
    settings: Settings,
    redis: Redis,
    trips: RoundTrips,
    stand_ins: StandIns,
    provider: str,
    events: int,
    new: int,
) -> dict[str, Any]:
    now = time.time()
    seen = EVENTS_OF[provider](stand_ins, events, new, now)
    earlier = replace(settings, queue_name=EARLIER_QUEUE)
    for start in range(0, len(seen), 100):
        deliver_bodies(earlier, provider, seen[start : start + 100])
    window = Window(
        datetime.fromtimestamp(int(now) - DAYS * 86400, tz=UTC),
        datetime.fromtimestamp(int(now) + 1, tz=UTC),
    )
    figures = {}
    if provider == "stripe":
        figures["quick"] = measure(
            settings, redis, trips, stand_ins, provider, window, thorough=False
        )
        # The quick scan queued the new ones: start again so the thorough scan finds them.
        redis.flushall()
        for start in range(0, len(seen), 100):
            deliver_bodies(earlier, provider, seen[start : start + 100])
    figures["thorough"] = measure(
        settings, redis, trips, stand_ins, provider, window, thorough=True
    )
    applied = apply(settings, redis, stand_ins.nexudus)
    figures["again"] = measure(settings, redis, trips, stand_ins, provider, window, thorough=True)
    return {"scans": figures, "applied": applied}


def apply(settings: Settings, redis: Redis, sandbox: SandboxState) -> dict[str, float]:
    """A real worker applies what the scan queued; the Nexudus calls it made."""
    ctx = context.build_context(settings)
    previous = context.install(ctx)
    before = len(sandbox.calls)
    paid_before = sum(1 for record in sandbox.invoices.values() if record["Paid"])
    try:
        SimpleWorker([Queue(settings.queue_name, connection=redis)], connection=redis).work(
            burst=True, logging_level="WARNING"
        )
    finally:
        context.install(previous)
        ctx.close()
    calls = sandbox.calls[before:]
    return {
        "paid": sum(1 for record in sandbox.invoices.values() if record["Paid"]) - paid_before,
        "calls": sum(1 for c in calls if c.status == 200),
        "writes": sum(1 for c in calls if c.status == 200 and c.write),
    }


def report(result: dict[str, Any]) -> None:
    events, new = result["events"], result["new"]
    print(
        f"\nReconcile: {events} events over {DAYS} days per provider, {events - new} seen "
        f"before ({platform.machine()}, {platform.python_implementation()} "
        f"{platform.python_version()})"
    )
    print(
        f"{'provider':<11} {'scan':<9} {'seconds':>8} {'queued':>7} {'seen':>6} {'pages':>6} "
        f"{'API/event':>10} {'RT/event':>9} {'RT client':>10} {'cmds/event':>11} {'Nexudus':>8}"
    )
    for provider, figures in result["providers"].items():
        for name, f in figures["scans"].items():
            c = f.counts
            per = max(c.scanned, 1)
            print(
                f"{provider:<11} {name:<9} {f.seconds:>8.2f} {c.queued:>7} {c.seen:>6} "
                f"{c.pages:>6} {f.api_calls / per:>10.4f} {c.redis_round_trips / per:>9.4f} "
                f"{f.client_round_trips:>10} {f.redis_commands / per:>11.2f} "
                f"{f.nexudus_calls:>8}"
            )
        applied = figures["applied"]
        print(
            f"{provider:<11} worker: {applied['paid']} invoices paid; {applied['calls']} Nexudus "
            f"calls ({applied['calls'] / max(new, 1):.2f} per new event, "
            f"{applied['writes'] / max(new, 1):.2f} writes); 0 for the events seen before"
        )
    print(
        "quick: delivery_success=false lists only the undelivered; thorough: every event; "
        "again: the thorough scan rerun once the new ones were applied.\n"
        "API: the provider's API calls (lists; GoCardless's payment GETs are the worker's "
        "and not in the scans'); RT/event: the scan's own count of Redis round trips; RT "
        "client: counted by the client's connection (must equal the scan's); cmds: Redis "
        "commands (INFO commandstats)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--new", type=int, default=None, help="default: 1%% of --events")
    parser.add_argument("--providers", default="stripe,gocardless")
    args = parser.parse_args()
    new = args.new if args.new is not None else max(args.events // 100, 1)
    report(run(args.events, new, tuple(args.providers.split(","))))


if __name__ == "__main__":
    main()
