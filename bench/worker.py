"""Worker benchmark: Nexudus calls and writes per payment, counted by the sandbox.

Nexudus allows 60 writes and 120 calls a minute and 5,000 writes a day, so calls per
payment decide how fast a billing run clears. The baseline, measured in the same run,
is the same pipeline searching for the payment token before every POST (the usual way
to make a POST idempotent against an API without idempotency keys).

The drain run then has 4 worker processes apply 200 payments at Nexudus's real limits
(60 writes and 120 calls a minute, 100 ms apart) against a sandbox that enforces them,
and reports the drain rate, the 429s met, and the gap between the GET an invoice PUT was
built from and the PUT (the window in which an admin's edit could be overwritten).

Usage: python -m bench.worker [--payments 40] [--drain 200] (--drain 0 skips it)
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import subprocess
import sys
import time
from dataclasses import replace
from decimal import Decimal
from typing import Any

from redis import Redis
from rq import Queue, SimpleWorker

from payhooks.devtools.embedded_redis import EmbeddedRedis
from payhooks.devtools.samples.deliver import deliver_bodies
from payhooks.devtools.sandbox.nexudus import SandboxState, create_sandbox_app, invoice_record
from payhooks.devtools.sandbox.server import ThreadedServer
from payhooks.providers.stripe import sample as samples
from payhooks.providers.stripe.settings import StripeSettings
from payhooks.settings import Settings
from workers import context
from workers.markers import Markers, TokenState


class AlwaysSearchMarkers(Markers):
    """The baseline: no memory of our own writes, so every event GETs the invoice and
    searches for the token before POSTing it."""

    def token_state(self, invoice_id: int, provider: str, token: str) -> TokenState:
        return TokenState(may_exist=True)


def deliver(settings: Settings, events: list[dict[str, Any]]) -> None:
    deliver_bodies(settings, "stripe", [json.dumps(e).encode() for e in events])


def scenario(
    name: str,
    settings: Settings,
    state: SandboxState,
    redis: Redis,
    events: list[dict[str, Any]],
    payments: int,
    baseline: bool,
) -> dict[str, float]:
    ctx = context.build_context(settings)
    if baseline:
        ctx.markers = AlwaysSearchMarkers(redis, lock_seconds=60)
    context.install(ctx)
    state.calls.clear()
    deliver(settings, events)
    SimpleWorker([Queue(settings.queue_name, connection=redis)], connection=redis).work(
        burst=True, logging_level="WARNING"
    )
    ctx.close()
    calls = [c for c in state.calls if c.status == 200]
    return {
        "calls": len(calls) / payments,
        "writes": len([c for c in calls if c.write]) / payments,
    }


def bench_settings(
    redis_url: str, sandbox_url: str, state: SandboxState, **limits: int
) -> Settings:
    """Settings against the embedded Redis and the sandbox (Nexudus's real limits unless
    ``limits`` changes them); the samples are test-mode Stripe events."""
    return Settings(
        redis_url=redis_url,
        nexudus_base_url=sandbox_url,
        nexudus_username=state.username,
        nexudus_password=state.password,
        providers=(
            StripeSettings(webhook_secrets=(samples.DEV_WEBHOOK_SECRET,), allow_test_mode=True),
        ),
        **limits,  # type: ignore[arg-type]
    )


def run(payments: int, *, baseline: bool) -> dict[str, dict[str, float]]:
    results: dict[str, dict[str, float]] = {}
    with EmbeddedRedis() as redis_server:
        state = SandboxState(writes_per_minute=100_000, calls_per_minute=100_000)
        sandbox = ThreadedServer(lambda: create_sandbox_app(state)).start()
        settings = bench_settings(
            redis_server.url,
            sandbox.url,
            state,
            nexudus_writes_per_minute=100_000,
            nexudus_calls_per_minute=100_000,
            nexudus_min_interval_ms=0,
        )
        redis = Redis.from_url(redis_server.url)
        for i in range(payments * 3):
            state.invoices[1000 + i] = invoice_record(1000 + i)

        intents = [
            samples.payment_intent(invoice_id=1000 + i, amount=Decimal("100.00"))
            for i in range(payments)
        ]
        single = [samples.event("payment_intent.succeeded", it) for it in intents]
        results["new payment, invoice id in metadata"] = scenario(
            "by id", settings, state, redis, single, payments, baseline
        )
        results["same events delivered again"] = scenario(
            "replay",
            replace(settings, queue_name="again"),
            state,
            redis,
            [dict(e, id=e["id"] + "_again") for e in single],
            payments,
            baseline,
        )

        by_number = [
            samples.event(
                "payment_intent.succeeded",
                samples.payment_intent(
                    invoice_id=None,
                    amount=Decimal("100.00"),
                    metadata={"nexudus_invoice_number": f"INV-{1000 + payments + i:05d}"},
                ),
            )
            for i in range(payments)
        ]
        results["new payment, found by invoice number"] = scenario(
            "by number", settings, state, redis, by_number, payments, baseline
        )

        together = []
        for i in range(payments):
            intent = samples.payment_intent(
                invoice_id=1000 + 2 * payments + i, amount=Decimal("100.00")
            )
            together += [
                samples.event("payment_intent.succeeded", intent),
                samples.event("charge.succeeded", samples.charge(intent)),
                samples.event("invoice.paid", samples.invoice_paid(intent)),
                samples.event("checkout.session.completed", samples.checkout_session(intent)),
            ]
        results["4 paid events of one payment"] = scenario(
            "together", settings, state, redis, together, payments, baseline
        )
        redis.close()
        sandbox.stop()
    return results


def drain(payments: int, workers: int = 4) -> dict[str, float]:
    """Payments applied by worker processes at the real limits, measured by the sandbox."""
    with EmbeddedRedis() as redis_server:
        state = SandboxState(writes_per_minute=60, calls_per_minute=120)
        sandbox = ThreadedServer(lambda: create_sandbox_app(state)).start()
        settings = bench_settings(redis_server.url, sandbox.url, state)
        for i in range(payments):
            state.invoices[5000 + i] = invoice_record(5000 + i)
        deliver(
            settings,
            [
                samples.event(
                    "payment_intent.succeeded",
                    samples.payment_intent(invoice_id=5000 + i, amount=Decimal("100.00")),
                )
                for i in range(payments)
            ],
        )
        env = {
            "PATH": os.environ.get("PATH", ""),
            "REDIS_URL": redis_server.url,
            "NEXUDUS_BASE_URL": sandbox.url,
            "NEXUDUS_USERNAME": state.username,
            "NEXUDUS_PASSWORD": state.password,
            "LOG_LEVEL": "WARNING",
        }
        started = time.monotonic()
        processes = [
            subprocess.Popen(
                [sys.executable, "-m", "payhooks.cli", "worker", "--burst"],
                env=env,
                stderr=subprocess.DEVNULL,
            )
            for _ in range(workers)
        ]
        for process in processes:
            process.wait()
        elapsed = time.monotonic() - started
        sandbox.stop()
    calls = state.calls
    last_get: dict[int, float] = {}
    gaps = []
    for call in calls:
        if call.invoice_id is None or call.status != 200:
            continue
        if call.method == "GET":
            last_get[call.invoice_id] = call.at
        elif call.method == "PUT" and call.invoice_id in last_get:
            gaps.append(call.at - last_get[call.invoice_id])
    paid = sum(1 for r in state.invoices.values() if r["PaidOn"])
    ok = [c for c in calls if c.status == 200]
    return {
        "paid": paid,
        "per_minute": paid / elapsed * 60,
        "throttled": sum(1 for c in calls if c.status in (409, 429)),
        "calls": len(ok) / max(paid, 1),
        "writes": len([c for c in ok if c.write]) / max(paid, 1),
        "gap_p50": statistics.median(gaps) if gaps else 0.0,
        "gap_p99": statistics.quantiles(gaps, n=100)[98] if len(gaps) > 1 else 0.0,
        "gap_max": max(gaps, default=0.0),
    }


def main() -> None:
    # The bench runs without STRIPE_API_KEY on purpose (no Stripe call is counted), so every
    # event whose method the body does not name logs stripe.method_unknown: a line a payment.
    logging.getLogger("payhooks.stripe").setLevel(logging.ERROR)
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--payments", type=int, default=40)
    parser.add_argument("--drain", type=int, default=200)
    args = parser.parse_args()
    ours = run(args.payments, baseline=False)
    base = run(args.payments, baseline=True)
    print(
        f"\nNexudus calls and writes per payment ({args.payments} payments per scenario; "
        "token grants not counted)"
    )
    print(f"{'scenario':<40} {'calls':>6} {'writes':>7} {'baseline calls':>15} {'ratio':>6}")
    for name, figures in ours.items():
        baseline_calls = base[name]["calls"]
        ratio = figures["calls"] / baseline_calls if baseline_calls else 0.0
        print(
            f"{name:<40} {figures['calls']:>6.2f} {figures['writes']:>7.2f} "
            f"{baseline_calls:>15.2f} {ratio:>6.2f}"
        )
    print(
        "\ntargets: new payment with id 2 writes and at most 3 calls; by number one more read;"
        " no write for a duplicate or an already applied event"
    )
    if args.drain:
        figures = drain(args.drain)
        print(
            f"\ndrain: 4 workers, {args.drain} payments at the real limits (60 writes/min, "
            "120 calls/min, 100 ms apart)"
        )
        print(
            f"paid {figures['paid']:.0f}; {figures['per_minute']:.1f} payments/min; "
            f"{figures['calls']:.2f} calls and {figures['writes']:.2f} writes per payment; "
            f"409/429 met: {figures['throttled']:.0f}"
        )
        print(
            f"GET-to-PUT gap: p50 {figures['gap_p50'] * 1000:.0f} ms, "
            f"p99 {figures['gap_p99'] * 1000:.0f} ms, max {figures['gap_max'] * 1000:.0f} ms "
            "(target p99 <= 2000 ms; 0 throttled)"
        )


if __name__ == "__main__":
    main()
