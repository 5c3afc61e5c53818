"""Redis memory per event: queued, on the day it is applied, and kept for the retention.

Realistic Stripe bodies (the ``payment_intent`` of Stripe's own OpenAPI fixtures, a 2 KB
event pretty-printed as Stripe sends it, each with its own ids and invoice) are queued
the way the receiver queues them (its inbox, the record-once script), applied by a real
RQ worker against the Nexudus sandbox, and Redis is measured three times, by
``MEMORY USAGE`` of every key (grouped by kind) and by ``INFO memory``'s used_memory:

- queued: after the receiver stored them;
- applied: right after the worker applied them (finished jobs and their results kept);
- kept: once what expires within a day has (finished jobs, results, locks, rate
  windows): what EVENT_RETENTION_DAYS holds.

Also: how providers' published bodies compress (tests/fixtures), zstd against zlib.

Usage: python -m bench.memory [--events 1000]
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

from redis import Redis
from rq import Queue, SimpleWorker

from bench.worker import bench_settings
from payhooks.devtools.embedded_redis import EmbeddedRedis
from payhooks.devtools.samples.deliver import deliver_bodies
from payhooks.devtools.sandbox.nexudus import SandboxState, create_sandbox_app, invoice_record
from payhooks.devtools.sandbox.server import ThreadedServer
from payhooks.storage import bodies
from workers import context

FIXTURES = Path(__file__).resolve().parent.parent / "tests" / "fixtures"
#: Targets of issue 21, as multiples of the raw body per event.
TARGETS = {"queued": 1.5, "applied": 1.0, "kept": 0.5}
MAX_KEYS_QUEUED = 3
DAY = 86400


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


def kind_of(key: str) -> str:
    """A key's kind: its prefix up to the part that names one thing."""
    parts = key.split(":")
    if parts[0] == "rq":
        return ":".join(parts[:2])
    return ":".join(parts[:2])


def usage(redis: Redis) -> tuple[Counter[str], Counter[str], int]:
    """(bytes by kind, keys by kind, used_memory)."""
    size: Counter[str] = Counter()
    keys: Counter[str] = Counter()
    for key in redis.scan_iter(count=1000):
        name = key.decode()
        size[kind_of(name)] += int(redis.memory_usage(key, samples=0) or 0)
        keys[kind_of(name)] += 1
    return size, keys, int(redis.info("memory")["used_memory"])


def expire_within(redis: Redis, seconds: int) -> None:
    """What Redis would have expired ``seconds`` from now (the probe cannot wait a day)."""
    for key in list(redis.scan_iter(count=1000)):
        ttl = redis.ttl(key)
        if 0 <= ttl <= seconds:
            redis.delete(key)


def sizing(kept: float, applied_extra: float) -> None:
    """Redis memory for a month of events kept EVENT_RETENTION_DAYS (30): the kept bytes per
    event, plus, for a billing run, the finished jobs and results of its last hour."""
    print(
        "\nsizing (EVENT_RETENTION_DAYS=30; kept bytes per event as measured above, plus a "
        "tenth of the month's events applied within one hour, their finished jobs and "
        "results still kept):"
    )
    print(f"{'events/month':>13} {'Redis':>10} {'+1 replica':>11} {'+2 replicas':>12}")
    for month in (10_000, 100_000, 1_000_000):
        total = month * kept + month / 10 * applied_extra
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
    shared: set[str],
) -> float:
    size, keys, used = measured
    per_event = {k: v / events for k, v in size.items() if k not in shared}
    per_invoice = {k for k in per_event if k == "payhooks:invoice"}
    total = sum(per_event.values())
    key_count = sum(v for k, v in keys.items() if k not in shared | per_invoice) / events
    invoice_keys = sum(v for k, v in keys.items() if k in per_invoice) / events
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
    return total


def compression() -> None:
    """Providers' published bodies, compressed as stored (zstd 3) and with zlib."""
    found = {
        "stripe payment_intent.succeeded": stripe_body(1),
        "gocardless": (FIXTURES / "gocardless_webhook_body.json").read_bytes(),
        "forte": (FIXTURES / "forte" / "transaction_sale_webhook.json").read_bytes(),
        **{
            f"paypal {p.stem}": p.read_bytes() for p in sorted((FIXTURES / "paypal").glob("*.json"))
        },
    }
    print(
        f"\n{'body (tests/fixtures)':<34} {'raw':>6} {'zstd 3':>14} {'zlib 6':>14} {'zlib 1':>14}"
    )
    totals: Counter[str] = Counter()
    for name, body in found.items():
        row = []
        for label, squeeze in (
            ("zstd 3", lambda b: bodies.pack(b)[0]),
            ("zlib 6", lambda b: zlib.compress(b, 6)),
            ("zlib 1", lambda b: zlib.compress(b, 1)),
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
            for label in ("zstd 3", "zlib 6", "zlib 1")
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=1000)
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
            # The queue's own keys are shared by every job (a list and a set), as are the
            # worker's registrations and Nexudus token: not counted per event.
            shared = {"rq:queues", "rq:workers", "rq:worker", "payhooks:nexudus", "rq:queue"}
            before = int(redis.info("memory")["used_memory"])
            deliver_bodies(settings, "stripe", payloads)
            print(
                f"\n{n} Stripe payment_intent.succeeded events, {body:,.0f} B body each "
                "(Stripe's fixture, pretty-printed as Stripe sends it); MEMORY USAGE per key, "
                "by kind, per event:"
            )
            queued = usage(redis)
            report("queued", queued, before, n, body, shared)
            queued_keys = (
                sum(v for k, v in queued[1].items() if k not in shared and k != "payhooks:invoice")
                / n
            )
            ctx = context.build_context(settings)
            context.install(ctx)
            SimpleWorker([Queue(settings.queue_name, connection=redis)], connection=redis).work(
                burst=True, logging_level="WARNING"
            )
            ctx.close()
            paid = sum(1 for r in state.invoices.values() if r["PaidOn"])
            shared |= {"rq:finished", "rq:wip", "rq:started", "rq:failed", "rq:scheduled"}
            applied = report("applied", usage(redis), before, n, body, shared)
            expire_within(redis, DAY)
            kept = report("kept", usage(redis), before, n, body, shared)
            print(
                f"keys per queued event: {queued_keys:.2f} (target <= {MAX_KEYS_QUEUED}); "
                f"invoices paid {paid} of {n}"
            )
            sizing(kept, applied - kept)
        finally:
            redis.close()
            sandbox.stop()
    compression()


if __name__ == "__main__":
    main()
