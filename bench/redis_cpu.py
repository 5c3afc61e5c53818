"""Redis CPU per queued webhook: what the record-once script costs the one Redis every
receiver and worker shares, measured without the receiver's load in the way.

Signed Stripe ``payment_intent.succeeded`` webhooks, built as bench.receiver builds them
(500 invoices in turn), are verified and normalised in-process and their record-once calls
sent as the receiver's inbox sends them (``RecordOnce.calls``, ``run_async``: hiredis-packed
EVALSHAs in one round trip per batch, ``--batch`` webhooks each, about what group commit
gathers at 50 connections). A warm-up first (the unapplied set and the invoice indexes
grow as they would), then ``CONFIG RESETSTAT`` and the measured webhooks; Redis's own
figures are read: ``INFO commandstats`` (usec per EVALSHA and the commands inside it) and
``INFO cpu`` (used_cpu_sys + used_cpu_user of the whole server, and of its main thread),
per webhook. The floor, as bench.receiver's bare app: one LPUSH of the raw body each, but
in the same batches (the bare app sends one a round trip, so its Redis also pays a read
and a write per webhook). With ``--callgrind``, Redis runs under valgrind and its
instructions per webhook are counted, the figure a shared machine's load does not move.

Usage: python -m bench.redis_cpu [--webhooks 20000] [--warmup 5000] [--batch 25]
                                 [--rounds 3] [--callgrind [--keep DIR]]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

from redis import Redis
from redis.asyncio import Redis as AsyncRedis

from bench.receiver import SECRET
from payhooks.devtools.embedded_redis import EmbeddedRedis
from payhooks.domain.events import PaymentEvent
from payhooks.providers.receivers import build_providers
from payhooks.providers.stripe import sample as samples
from payhooks.providers.stripe.settings import StripeSettings
from payhooks.settings import Settings
from payhooks.storage.jobs import JobFactory
from payhooks.storage.record_once import RecordOnce, run_async
from payhooks.storage.trail import StoredWebhook

#: The commands the bench sends (commandstats also counts those a script runs).
SENT = ("cmdstat_evalsha", "cmdstat_eval", "cmdstat_lpush")


def webhooks(count: int, first: int = 0) -> list[tuple[bytes, dict[str, str]]]:
    """Signed bodies as bench.receiver sends them (each its own event and intent)."""
    made = []
    for n in range(first, first + count):
        intent = samples.payment_intent(invoice_id=1000 + n % 500, amount=Decimal("100.00"))
        body = json.dumps(samples.event("payment_intent.succeeded", intent)).encode()
        _, headers = samples.signed(body, SECRET)
        made.append((body, headers))
    return made


def record_calls(settings: Settings, record: RecordOnce, count: int, first: int) -> list[list[Any]]:
    """Each webhook's calls, as the receiver makes them once it has verified it."""
    provider = build_providers(settings)["stripe"]
    calls: list[list[Any]] = []
    for body, headers in webhooks(count, first):
        provider.verify(body, headers)
        kept = {"Stripe-Signature": headers["Stripe-Signature"]}
        stored = StoredWebhook.of("stripe", body, kept, provider.redact(body))
        events = [e for e in provider.normalise(body, headers) if isinstance(e, PaymentEvent)]
        calls.append(record.calls(stored, events))
    return calls


def floor_calls(count: int, first: int) -> list[list[Any]]:
    return [[["LPUSH", "bench:raw", body]] for body, _ in webhooks(count, first)]


async def send(url: str, record: RecordOnce, per_webhook: Sequence[list[Any]], batch: int) -> None:
    redis = AsyncRedis.from_url(url)
    try:
        for start in range(0, len(per_webhook), batch):
            chunk = [call for calls in per_webhook[start : start + batch] for call in calls]
            answers = await run_async(redis, record, chunk)
            if any(isinstance(a, int) and a < 0 for a in answers):
                raise RuntimeError("a call was fenced")
    finally:
        await redis.aclose()


def callgrind_control(server: EmbeddedRedis, option: str, out: Path) -> int:
    """``callgrind_control`` on the server: -z zeroes its counters; -d dumps them into
    ``out``, and the instructions counted since are returned."""
    pid = server.pid
    subprocess.run(["callgrind_control", option, str(pid)], check=True, capture_output=True)
    if option != "-d":
        return 0
    dumps = sorted(out.glob("callgrind.out.*"), key=lambda p: p.stat().st_mtime)
    if not dumps:
        raise RuntimeError(f"callgrind wrote no dump in {out}")
    found = re.search(r"^(?:summary|totals): (\d+)", dumps[-1].read_text(), re.MULTILINE)
    if found is None:
        raise RuntimeError(f"no totals in {dumps[-1]}")
    return int(found.group(1))


def cpu(redis: Redis) -> tuple[float, float]:
    info = redis.info("cpu")
    return (
        float(info["used_cpu_sys"]) + float(info["used_cpu_user"]),
        float(info.get("used_cpu_sys_main_thread", 0))
        + float(info.get("used_cpu_user_main_thread", 0)),
    )


def measure(
    name: str,
    server: EmbeddedRedis,
    settings: Settings,
    args: argparse.Namespace,
    *,
    floor: bool,
    out: Path,
) -> dict[str, float]:
    record = RecordOnce(JobFactory(settings), event_ttl_seconds=settings.event_ttl_seconds)
    make = (
        (lambda n, first: floor_calls(n, first))
        if floor
        else (lambda n, first: record_calls(settings, record, n, first))
    )
    warmup = make(args.warmup, 0)
    measured = make(args.webhooks, args.warmup)
    redis = Redis.from_url(settings.redis_url)
    try:
        asyncio.run(send(settings.redis_url, record, warmup, args.batch))
        redis.config_resetstat()
        if args.callgrind:
            callgrind_control(server, "-z", out)
        before, before_main = cpu(redis)
        asyncio.run(send(settings.redis_url, record, measured, args.batch))
        after, after_main = cpu(redis)
        stats = redis.info("commandstats")
        instructions = callgrind_control(server, "-d", out) if args.callgrind else 0
    finally:
        redis.close()
    n = args.webhooks
    # The calls sent: a script's commands are counted again on their own lines.
    total_usec = sum(float(v["usec"]) for k, v in stats.items() if k in SENT)
    figures = {
        "cpu_us": (after - before) / n * 1e6,
        "main_us": (after_main - before_main) / n * 1e6,
        "commands_us": total_usec / n,
        "k_instructions": instructions / n / 1000,
    }
    inner = sorted(
        ((k.removeprefix("cmdstat_"), v) for k, v in stats.items()),
        key=lambda item: -float(item[1]["usec"]),
    )
    print(
        f"{name:<8} used_cpu {figures['cpu_us']:6.1f} us/webhook (main thread "
        f"{figures['main_us']:6.1f}); commandstats {figures['commands_us']:6.1f} us/webhook"
        + (f"; {figures['k_instructions']:,.0f}k instructions" if args.callgrind else "")
    )
    print(
        "         "
        + ", ".join(
            f"{k} {int(v['calls']) / n:.2f}x {float(v['usec_per_call']):.2f}us"
            for k, v in inner
            if k not in ("config", "info", "client", "hello")
        )
    )
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--webhooks", type=int, default=20_000)
    parser.add_argument("--warmup", type=int, default=5_000)
    parser.add_argument("--batch", type=int, default=25)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--callgrind",
        action="store_true",
        help="run Redis under valgrind's callgrind and count its instructions per webhook "
        "(the load does not move that figure; its times are then valgrind's, not Redis's)",
    )
    parser.add_argument(
        "--keep",
        metavar="DIR",
        help="with --callgrind: keep the dumps there, for callgrind_annotate",
    )
    args = parser.parse_args()
    print(
        f"{args.webhooks:,} Stripe payment_intent.succeeded webhooks after {args.warmup:,} "
        f"to warm up, {args.batch} per round trip; Redis CPU per webhook"
    )
    results: dict[str, list[dict[str, float]]] = {"payhooks": [], "bare": []}
    for _ in range(args.rounds):
        for name, runs in results.items():
            out = tempfile.mkdtemp(prefix=f"payhooks-redis-cpu-{name}-", dir=args.keep)
            wrapper = (
                ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}/callgrind.out"]
                if args.callgrind
                else []
            )
            with EmbeddedRedis(wrapper=wrapper) as server:
                settings = Settings(
                    redis_url=server.url,
                    providers=(StripeSettings(webhook_secrets=(SECRET,), allow_test_mode=True),),
                )
                runs.append(
                    measure(name, server, settings, args, floor=name == "bare", out=Path(out))
                )
            if not args.keep:
                shutil.rmtree(out, ignore_errors=True)
    print("\nmedian of the rounds (us of Redis CPU per webhook):")
    for name, runs in results.items():
        medians = {k: sorted(r[k] for r in runs)[len(runs) // 2] for k in runs[0]}
        print(
            f"  {name:<8} used_cpu {medians['cpu_us']:6.1f}  main thread {medians['main_us']:6.1f}"
            f"  commandstats {medians['commands_us']:6.1f}"
            + (f"  {medians['k_instructions']:,.0f}k instructions" if args.callgrind else "")
        )


if __name__ == "__main__":
    main()
