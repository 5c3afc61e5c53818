"""Redis memory per event: queued, on the day it is applied, and kept for the retention.

Realistic Stripe bodies (the ``payment_intent`` of Stripe's own OpenAPI fixtures, a 2 KB
event pretty-printed as Stripe sends it, each with its own ids and invoice) are queued
the way the receiver queues them (its inbox, the record-once script), applied by a real
RQ worker against the Nexudus sandbox, and Redis is measured three times, by
``MEMORY USAGE`` of every key (grouped by kind) and by ``INFO memory``'s used_memory:

- queued: after the receiver stored them;
- applied: right after the worker applied them (a finished job and its result are kept a
  second, RESULT_TTL_SECONDS: those of the run's last second may still be counted);
- kept: once what expires within a day has (locks, the breaker's window): what
  EVENT_RETENTION_DAYS holds, and, of it, what is kept 400 days (the money path's records,
  classed by their TTL: a payment's invoice, an invoice's money record of its payments'
  token markers and amounts).

Per-invoice keys are kinds of their own: ``payhooks:invoice`` (the money record) and
``payhooks:invoice:events`` (the invoice's event index, kept EVENT_RETENTION_DAYS).

Not per event: the queue's own keys, worker registrations, the Nexudus token, metrics
counters and the rate limiter's windows, whose size Nexudus's limits bound (at most
60 + 5,000 + 120 entries, whatever the number of events; the probe lifts the limits, so
its windows hold every call: printed apart).

Each body is kept with its ``Stripe-Signature`` header, as the receiver keeps it (the
README's figures before issue 21's third pass left it out: 110 B per event kept).

Then the same per provider, on each provider's own `send-test` sample, queued, applied and
kept (bench/provider_memory.py); and how providers' published bodies compress
(tests/fixtures), as kept (zstd with the dictionary d1), with zstd alone and with zlib;
bodies not in the dictionary marked.

Usage: python -m bench.memory [--events 1000] [--per-provider 100]
"""

from __future__ import annotations

import argparse
import copy
import json
import secrets
import time
import zlib
from collections import Counter
from pathlib import Path

import zstandard
from redis import Redis
from rq import Queue, SimpleWorker

from bench.provider_memory import per_provider
from bench.redis_bytes import (
    DAY,
    MARKER_DAYS,
    MAX_KEYS_QUEUED,
    MONTHS_OF_MARKERS,
    SHARED,
    TARGETS,
    expire_within,
    per_invoice,
    steady_state,
    usage,
    used_memory_by_kind,
)
from bench.worker import bench_settings
from payhooks.devtools.embedded_redis import EmbeddedRedis
from payhooks.devtools.samples.deliver import deliver_webhooks
from payhooks.devtools.sandbox.nexudus import SandboxState, create_sandbox_app, invoice_record
from payhooks.devtools.sandbox.server import ThreadedServer
from payhooks.providers.stripe import sample as samples
from payhooks.storage import bodies
from workers import context

FIXTURES = Path(__file__).resolve().parent.parent / "tests" / "fixtures"
#: The rate windows' bound: Nexudus's 60 writes a minute, 5,000 a day, 120 calls a minute.
BOUND_ENTRIES = 60 + 5000 + 120


def signed(body: bytes) -> tuple[bytes, dict[str, str]]:
    """The body and the one header of it the receiver keeps: Stripe's signature."""
    _, headers = samples.signed(body, samples.DEV_WEBHOOK_SECRET)
    return body, {"Stripe-Signature": headers["Stripe-Signature"]}


def stripe_body(invoice_id: int) -> bytes:
    """A payment_intent.succeeded as Stripe sends it, from Stripe's own fixture object."""
    fixtures = json.loads((FIXTURES / "stripe_openapi_fixtures.json").read_text())
    intent = copy.deepcopy(fixtures["fixtures3"]["payment_intent"])
    intent.update(
        id=f"pi_{secrets.token_hex(12)}",
        amount=10000,
        amount_received=10000,
        currency="eur",
        status="succeeded",
        livemode=True,
        metadata={"nexudus_invoice_id": str(invoice_id)},
        payment_method_types=["card"],
        latest_charge=f"ch_{secrets.token_hex(12)}",
    )
    event = {
        "id": f"evt_{secrets.token_hex(12)}",
        "object": "event",
        "api_version": "2024-06-20",
        "created": int(time.time()),
        "data": {"object": intent},
        "livemode": True,
        "pending_webhooks": 1,
        "request": {"id": f"req_{secrets.token_hex(7)}", "idempotency_key": None},
        "type": "payment_intent.succeeded",
    }
    return json.dumps(event, indent=2).encode()


def sizing(kept: float, long: float, job: float, rate_bound: float) -> None:
    """Redis memory, steady state, for a month's events: what EVENT_RETENTION_DAYS (30)
    keeps for a month of them, the 400-day markers for 400 days of them, the jobs of a
    tenth of the month queued at once (a billing run), and the limiter's windows at their
    bound."""
    print(
        "\nsizing (steady state: EVENT_RETENTION_DAYS=30 of events at the kept bytes above "
        f"less the markers, {MONTHS_OF_MARKERS:.1f} months of markers, a tenth of a month "
        "queued at once, the rate windows at their bound):"
    )
    print(f"{'events/month':>13} {'Redis':>10} {'+1 replica':>11} {'+2 replicas':>12}")
    for month in (10_000, 100_000, 1_000_000):
        total = steady_state(month, kept, long, job) + rate_bound
        print(
            f"{month:>13,} {total / 2**20:>7,.0f} MB {2 * total / 2**20:>8,.0f} MB "
            f"{3 * total / 2**20:>9,.0f} MB"
        )


def report(
    stage: str,
    measured: tuple[Counter[str], Counter[str], int],
    before: int,
    events: int,
    body: float,
    shared: frozenset[str],
) -> float:
    size, keys, used = measured
    per_event = {k: v / events for k, v in size.items() if k not in shared | {"long"}}
    total = sum(per_event.values())
    key_count = sum(v for k, v in keys.items() if k not in shared and not per_invoice(k)) / events
    invoice_keys = sum(v for k, v in keys.items() if per_invoice(k)) / events
    ratio = total / body
    target = TARGETS[stage]
    print(
        f"{stage:<8} {total:>7,.0f} B/event = {ratio:4.2f}x the body (target <= {target}x: "
        f"{'met' if ratio <= target else 'NOT met'}); {key_count:.2f} keys/event "
        f"(+{invoice_keys:.2f} per-invoice keys: each event here names its own invoice); "
        f"used_memory {(used - before) / events:,.0f} B/event"
    )
    parts = sorted(per_event.items(), key=lambda item: -item[1])
    print("         " + ", ".join(f"{k} {v:,.0f}" for k, v in parts if v >= 1))
    if size["long"]:
        print(f"         of which kept {MARKER_DAYS} days: {size['long'] / events:,.0f}")
    return total


def compression() -> None:
    """Providers' published bodies, compressed as kept (bodies.pack), with zstd alone and
    with zlib. (*): not in the dictionary d1."""
    found = {
        "stripe payment_intent.succeeded": stripe_body(1),
        "gocardless (*)": (FIXTURES / "gocardless_webhook_body.json").read_bytes(),
        "forte (*)": (FIXTURES / "forte" / "transaction_sale_webhook.json").read_bytes(),
        **{
            f"paypal {p.stem} (*)": p.read_bytes()
            for p in sorted((FIXTURES / "paypal").glob("*.json"))
        },
    }
    zstd_alone = zstandard.ZstdCompressor(level=3)
    print(
        f"\n{'body (tests/fixtures)':<34} {'raw':>6} {'as kept':>14} {'zstd 3':>14} {'zlib 6':>14}"
    )
    totals: Counter[str] = Counter()
    for name, body in found.items():
        row = []
        for label, squeeze in (
            ("as kept", lambda b: bodies.pack(b)[0]),
            ("zstd 3", zstd_alone.compress),
            ("zlib 6", lambda b: zlib.compress(b, 6)),
        ):
            started = time.process_time()
            for _ in range(200):
                out = squeeze(body)
            micros = (time.process_time() - started) / 200 * 1e6
            totals[label] += len(out)
            totals[label + " us"] += int(micros * 1000)
            row.append(f"{len(out):>6} {micros:5.1f} us")
        totals["raw"] += len(body)
        print(f"{name:<34} {len(body):>6} " + " ".join(row))
    print(
        f"{'all':<34} {totals['raw']:>6} "
        + " ".join(
            f"{totals[label] / totals['raw']:>6.0%} {totals[label + ' us'] / 1000 / len(found):5.1f} us"
            for label in ("as kept", "zstd 3", "zlib 6")
        )
    )


def rate_windows(redis: Redis) -> tuple[int, int]:
    """(bytes, entries) of the rate limiter's windows."""
    size = entries = 0
    for key in redis.scan_iter(match="payhooks:rate:*", count=1000):
        size += int(redis.memory_usage(key, samples=0) or 0)
        entries += int(redis.zcard(key)) if redis.type(key) == b"zset" else 0
    return size, entries


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=1000)
    parser.add_argument(
        "--per-provider",
        type=int,
        default=100,
        metavar="N",
        help="events of each provider for the per-provider table (0: none)",
    )
    args = parser.parse_args()
    n = args.events
    with EmbeddedRedis() as redis_server:
        state = SandboxState(writes_per_minute=1_000_000, calls_per_minute=1_000_000)
        sandbox = ThreadedServer(lambda: create_sandbox_app(state)).start()
        settings = bench_settings(
            redis_server.url,
            sandbox.url,
            state,
            nexudus_writes_per_minute=1_000_000,
            nexudus_calls_per_minute=1_000_000,
            nexudus_min_interval_ms=0,
        )
        redis = Redis.from_url(redis_server.url)
        try:
            for i in range(n):
                state.invoices[10_000 + i] = invoice_record(10_000 + i)
            payloads = [stripe_body(10_000 + i) for i in range(n)]
            body = sum(len(p) for p in payloads) / n
            before = int(redis.info("memory")["used_memory"])
            deliver_webhooks(settings, "stripe", [signed(p) for p in payloads])
            print(
                f"\n{n} Stripe payment_intent.succeeded events, {body:,.0f} B body each "
                "(Stripe's fixture, pretty-printed as Stripe sends it); MEMORY USAGE per key, "
                "by kind, per event:"
            )
            measured = usage(redis)
            queued = report("queued", measured, before, n, body, SHARED)
            job_bytes = measured[0]["rq:job"] / n
            queued_keys = (
                sum(v for k, v in measured[1].items() if k not in SHARED and not per_invoice(k)) / n
            )
            ctx = context.build_context(settings)
            context.install(ctx)
            SimpleWorker([Queue(settings.queue_name, connection=redis)], connection=redis).work(
                burst=True, logging_level="WARNING"
            )
            ctx.close()
            paid = sum(1 for r in state.invoices.values() if r["PaidOn"])
            applied = report("applied", usage(redis), before, n, body, SHARED)
            rate_bytes, rate_entries = rate_windows(redis)
            bound = BOUND_ENTRIES
            rate_bound = rate_bytes / max(rate_entries, 1) * bound
            print(
                f"         not per event: the rate windows, {rate_bytes / n:,.0f} B/event here "
                f"({rate_entries:,} entries: the probe lifts Nexudus's limits), at most "
                f"{bound:,} entries = {rate_bound / 2**20:.1f} MB at the real limits"
            )
            expire_within(redis, DAY)
            measured = usage(redis)
            kept = report("kept", measured, before, n, body, SHARED)
            long = measured[0]["long"] / n
            print(
                f"keys per queued event: {queued_keys:.2f} (target <= {MAX_KEYS_QUEUED}); "
                f"invoices paid {paid} of {n}"
            )
            print(
                "\nagainst issue 21's targets (bytes per event / body):\n"
                + "\n".join(
                    f"  {stage:<8} {value / body:5.2f}x  target <= {TARGETS[stage]}x  "
                    f"{'met' if value / body <= TARGETS[stage] else 'NOT met'}"
                    for stage, value in (("queued", queued), ("applied", applied), ("kept", kept))
                )
            )
            sizing(kept, long, job_bytes, rate_bound)
            freed = used_memory_by_kind(redis, n)
            print(
                "\nused_memory by kind, kept (B/event, freed by deleting each kind's keys): "
                + ", ".join(f"{k} {v:,.0f}" for k, v in sorted(freed.items(), key=lambda i: -i[1]))
            )
        finally:
            redis.close()
            sandbox.stop()
        if args.per_provider:
            per_provider(redis_server.url, args.per_provider)
    compression()


if __name__ == "__main__":
    main()
