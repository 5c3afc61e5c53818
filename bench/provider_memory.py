"""Redis memory per event for each provider: bench.memory's per-provider table.

Each provider's own `send-test` sample (payhooks/providers/tools.py: its ``for_send_test``
builds a signed body as the provider sends it and registers the payment with the sandbox's
stand-in of the provider's API, where the worker confirms it), each paying its own
invoice, with the settings `payhooks dev` runs with (every provider at its stand-in). A
webhook is queued as the receiver queues it once verified (``deliver_bodies``, with the
headers the receiver keeps: its signature headers; ePay's body is the query string of its
GET, as received; Forte's URL token is checked before and not kept); EziDebit, which sends
nothing, through its poll (workers/polls.py ``poll``: the records the poll reads are kept
as their events' origin). A real RQ worker applies them against the sandbox.

Measured per provider, per event, as bench.memory measures Stripe's: ``MEMORY USAGE`` of
every key that grows with the events, queued, applied and kept (once what lasts under a day
has expired); used_memory freed by deleting each kind's keys, kept and queued (of the same
bodies queued a second time into an emptied Redis: deleting the first ones would leave
the worker nothing to apply).
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal

from aiohttp import web
from redis import Redis
from rq import Queue, SimpleWorker

from bench.redis_bytes import (
    DAY,
    MARKER_DAYS,
    MAX_KEYS_QUEUED,
    SHARED,
    TARGETS,
    expire_within,
    keys_per_event,
    loose_kinds,
    per_event,
    steady_state,
    usage,
    used_memory_by_kind,
)
from payhooks.devtools.dev_environment import dev_environment
from payhooks.devtools.samples.deliver import deliver_webhooks
from payhooks.devtools.sandbox import add_stand_ins
from payhooks.devtools.sandbox.nexudus import SandboxState, create_sandbox_app, invoice_record
from payhooks.devtools.sandbox.server import ThreadedServer
from payhooks.providers.generic.sample import DEV_SOURCE
from payhooks.providers.kit.samples import DevSandbox, Sample, SampleRequest
from payhooks.providers.paypal.stand_in import PayPalState
from payhooks.providers.pollers import build_pollers
from payhooks.providers.receivers import build_providers
from payhooks.providers.tools import TOOLS
from payhooks.settings import Settings
from payhooks.storage.jobs import RESULT_TTL_SECONDS, JobFactory
from payhooks.storage.record_once import RecordOnce
from payhooks.storage.task_lease import TaskLease
from payhooks.storage.worker_metrics import WorkerMetrics
from workers import context
from workers.polls import poll, poll_task

AMOUNT = Decimal("100.00")  # the sandbox's invoices are of 100.00 EUR
#: A poll's lease and cursor: one each per scheduled task, whatever the number of events.
SHARED_HERE = SHARED | {"payhooks:task"}
#: How a provider's events reach Redis other than as a webhook's, said in the table's notes.
HAND_OFF_NOTES = {
    "epay": "the GET's query string is the body (kept as received, cardno redacted)",
    "forte": "its URL token is checked before the body is read, and not kept",
    "ezidebit": "no webhook: its poll's hand-off (the GetPayments rows it reads are kept as "
    "the events' origin), not deliver_bodies",
}


@dataclass(frozen=True, slots=True)
class Measured:
    name: str
    events: int
    #: The raw body (a polled provider: the record its poll reads), mean bytes.
    body: float
    #: MEMORY USAGE per event, by stage.
    queued: float
    applied: float
    kept: float
    #: used_memory per event freed by deleting the per-event keys.
    queued_used: float
    kept_used: float
    keys: float
    paid: int
    #: MEMORY USAGE per event, kept, by kind; of it kept MARKER_DAYS; the queued job.
    kept_kinds: dict[str, float]
    long: float
    job: float
    #: Kinds whose keys are out of Redis's compact encoding, queued and kept ("" if none).
    loose_queued: str
    loose_kept: str


@dataclass(frozen=True, slots=True)
class Lab:
    """The embedded Redis, the sandbox with every stand-in, and the dev settings."""

    settings: Settings
    state: SandboxState
    redis: Redis
    sandbox_url: str

    def request(self, invoice: int) -> SampleRequest:
        return SampleRequest(
            invoice=invoice,
            amount=AMOUNT,
            currency="EUR",
            method="card",
            source=DEV_SOURCE,
            env={},
            sandbox_url=self.sandbox_url,
        )

    def samples(self, name: str, first_invoice: int, events: int) -> list[Sample]:
        """``events`` samples of ``name``, each for an invoice of its own (made here)."""
        made = []
        for invoice in range(first_invoice, first_invoice + events):
            self.state.invoices[invoice] = invoice_record(invoice)
            made.append(TOOLS[name].sample(self.request(invoice)))
        return made

    def work(self) -> None:
        ctx = context.build_context(self.settings)
        context.install(ctx)
        queue = Queue(self.settings.queue_name, connection=self.redis)
        SimpleWorker([queue], connection=self.redis).work(burst=True, logging_level="WARNING")
        ctx.close()

    def measure(
        self, name: str, invoices: range, body: float, queue: Callable[[], None]
    ) -> Measured:
        """Queue (``queue``), measure, empty Redis, queue again, apply, measure, a day
        later measure again."""
        redis, events = self.redis, len(invoices)
        redis.flushall()
        queue()
        queued = usage(redis, SHARED_HERE)
        loose_queued = loose_kinds(redis, SHARED_HERE)
        queued_used = sum(used_memory_by_kind(redis, events, SHARED_HERE).values())
        redis.flushall()
        queue()
        self.work()
        # A second on: a finished job and its result are kept RESULT_TTL_SECONDS (1), so
        # on the day only the last second's are in Redis.
        expire_within(redis, RESULT_TTL_SECONDS)
        applied = usage(redis, SHARED_HERE)
        expire_within(redis, DAY)
        kept = usage(redis, SHARED_HERE)
        loose_kept = loose_kinds(redis, SHARED_HERE)
        kept_used = sum(used_memory_by_kind(redis, events, SHARED_HERE).values())
        redis.flushall()
        kept_kinds = per_event(kept, events, SHARED_HERE)
        return Measured(
            name=name,
            events=events,
            body=body,
            queued=sum(per_event(queued, events, SHARED_HERE).values()),
            applied=sum(per_event(applied, events, SHARED_HERE).values()),
            kept=sum(kept_kinds.values()),
            queued_used=queued_used,
            kept_used=kept_used,
            keys=keys_per_event(queued, events, SHARED_HERE),
            paid=sum(1 for i in invoices if self.state.invoices[i]["PaidOn"]),
            kept_kinds=kept_kinds,
            long=kept[0]["long"] / events,
            job=queued[0]["rq:job"] / events,
            loose_queued=per_event_keys(loose_queued, events),
            loose_kept=per_event_keys(loose_kept, events),
        )


def webhook_provider(lab: Lab, name: str, first_invoice: int, events: int) -> Measured:
    receiver = build_providers(lab.settings)[f"generic/{DEV_SOURCE}" if name == "generic" else name]
    webhooks = []
    for sample in lab.samples(name, first_invoice, events):
        body = sample.query.encode() if sample.query is not None else sample.body
        kept = {h: sample.headers[h] for h in receiver.signature_headers if h in sample.headers}
        webhooks.append((body, kept))

    def queue() -> None:
        deliver_webhooks(lab.settings, receiver.name, webhooks)

    mean = statistics.mean(len(body) for body, _ in webhooks)
    invoices = range(first_invoice, first_invoice + events)
    return lab.measure(receiver.name, invoices, mean, queue)


def polled_provider(lab: Lab, name: str, first_invoice: int, events: int) -> Measured:
    """A provider with no webhook (EziDebit): its payments registered with its stand-in,
    read and recorded by one run of its poll, as the scheduler's task runs it."""
    lab.samples(name, first_invoice, events)
    poller = build_pollers(lab.settings)[name]
    records = poller.fetch(None).records
    record = RecordOnce(JobFactory(lab.settings), event_ttl_seconds=lab.settings.event_ttl_seconds)

    def queue() -> None:
        lease = TaskLease(
            lab.redis,
            poll_task(poller.name),
            seconds=600,
            cursor_ttl_seconds=lab.settings.event_ttl_seconds,
        )
        lease.acquire()
        poll(poller, lease, lab.redis, record, WorkerMetrics(lab.redis))
        lease.release()

    mean = statistics.mean(len(r) for r in records)
    return lab.measure(name, range(first_invoice, first_invoice + events), mean, queue)


def stage(value: float, body: float) -> str:
    return f"{value:>6,.0f} {value / body:5.2f}x"


def targets_met(row: Measured) -> str:
    return " ".join(
        "met" if value / row.body <= TARGETS[name] else "NOT"
        for name, value in (("queued", row.queued), ("applied", row.applied), ("kept", row.kept))
    )


def print_table(rows: list[Measured], events: int, seconds: float) -> None:
    print(
        f"\nper provider ({seconds:.0f} s): {events} events each, its send-test sample (each "
        "paying its own invoice), queued as the receiver queues it once verified, applied by "
        "a real worker against the sandbox's stand-ins (applied: a second on, when a finished "
        "job has expired); B per event and x the raw body, MEMORY USAGE and used_memory freed "
        "by deleting each kind's keys; keys per queued event (target <= "
        f"{MAX_KEYS_QUEUED}), the invoice's left out:"
    )
    print(
        f"{'':<13}{'':>6}  {'MEMORY USAGE':<41}  {'used_memory':<27}"
        f"{'':>5}{'':>9}  targets (queued <= {TARGETS['queued']}x,"
    )
    print(
        f"{'provider':<13}{'body':>6}  {'queued':<13} {'applied':<13} {'kept':<13}  "
        f"{'queued':<13} {'kept':<13} {'keys':>5} {'paid':>9}  applied <= {TARGETS['applied']}x, "
        f"kept <= {TARGETS['kept']}x)"
    )
    for row in rows:
        print(
            f"{row.name:<13}{row.body:>6,.0f}  {stage(row.queued, row.body)} "
            f"{stage(row.applied, row.body)} {stage(row.kept, row.body)}  "
            f"{stage(row.queued_used, row.body)} {stage(row.kept_used, row.body)} "
            f"{row.keys:>5.2f} {f'{row.paid}/{row.events}':>9}  {targets_met(row)}"
        )
    kinds = sorted(
        {k for row in rows for k in row.kept_kinds},
        key=lambda k: -sum(r.kept_kinds.get(k, 0) for r in rows),
    )
    short = [k.removeprefix("payhooks:") for k in kinds]
    print(
        "\nkept, by kind (MEMORY USAGE, B per event); bookkeeping: all but the origin (the "
        f"webhook or polled record), whatever the body; of it kept {MARKER_DAYS} days; Redis "
        "for 1,000,000 events a month, steady state (as the sizing above):"
    )
    print(
        f"{'provider':<13}{'body':>6}  "
        + " ".join(f"{s:>14}" for s in short)
        + f"  {'bookkeeping':>11} {f'{MARKER_DAYS} days':>8} {'1M/month':>9}"
    )
    for row in rows:
        origin = row.kept_kinds.get("payhooks:webhook", 0) + row.kept_kinds.get(
            "payhooks:polled", 0
        )
        month = steady_state(1_000_000, row.kept, row.long, row.job)
        print(
            f"{row.name:<13}{row.body:>6,.0f}  "
            + " ".join(f"{row.kept_kinds.get(k, 0):>14,.0f}" for k in kinds)
            + f"  {row.kept - origin:>11,.0f} {row.long:>8,.0f} {month / 2**20:>6,.0f} MB"
        )
    for name, note in HAND_OFF_NOTES.items():
        print(f"  {name}: {note}")
    loose = [row for row in rows if row.loose_queued or row.loose_kept]
    if loose:
        print(
            "\nkeys out of Redis's compact encoding (a hash or sorted set holding a value over "
            "64 bytes: a hash table, several times the size), per event, queued; kept:"
        )
    for row in loose:
        print(f"  {row.name:<13}{row.loose_queued or 'none'}; {row.loose_kept or 'none'}")


def per_event_keys(loose: Counter[str], events: int) -> str:
    """The kinds whose keys are out of the compact encoding, with their keys per event; a
    kind of a key or two (the unapplied index, shared by all the events) is left out."""
    return ", ".join(
        f"{k.removeprefix('payhooks:')} {v / events:.2f}"
        for k, v in sorted(loose.items())
        if v >= events / 2
    )


def per_provider(redis_url: str, events: int) -> None:
    """Measure every provider of payhooks/providers/tools.py and print the table."""
    started = time.perf_counter()
    state = SandboxState(writes_per_minute=1_000_000, calls_per_minute=1_000_000)
    paypal = PayPalState()

    def make() -> web.Application:
        app = create_sandbox_app(state)
        add_stand_ins(app, {"paypal": paypal})
        return app

    sandbox = ThreadedServer(make).start()
    redis = Redis.from_url(redis_url)
    try:
        with tempfile.TemporaryDirectory() as data_dir:
            dev = dev_environment(DevSandbox(sandbox.url, data_dir, {"paypal": paypal}), {})
            settings = Settings.from_env(
                {
                    **dev,
                    "REDIS_URL": redis_url,
                    "NEXUDUS_BASE_URL": sandbox.url,
                    "NEXUDUS_USERNAME": state.username,
                    "NEXUDUS_PASSWORD": state.password,
                    # Lifted, as for Stripe's: the rate windows are not per event.
                    "NEXUDUS_WRITES_PER_MINUTE": "1000000",
                    "NEXUDUS_CALLS_PER_MINUTE": "1000000",
                    "NEXUDUS_MIN_INTERVAL_MS": "0",
                }
            )
            lab = Lab(settings, state, redis, sandbox.url)
            polled = set(build_pollers(settings)) - set(build_providers(settings))
            rows = []
            for number, name in enumerate(TOOLS):
                measure = polled_provider if name in polled else webhook_provider
                rows.append(measure(lab, name, 100_000 * (number + 1), events))
    finally:
        redis.close()
        sandbox.stop()
    print_table(rows, events, time.perf_counter() - started)
