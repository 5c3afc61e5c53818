"""Receiver benchmark: signed Stripe webhooks acknowledged per second, p99 latency at
50 connections, and server CPU time per acknowledged webhook, for `payhooks serve` (one
process, and `--workers 2`) and, under the same load generator in the same run:
  (a) Flask + gunicorn (2 sync workers) + construct_event + Queue.enqueue
  (b) a bare aiohttp handler: hand-written HMAC check + LPUSH with redis.asyncio
Throughput is compared per process (one payhooks process against (a)'s two) and at equal
processes (payhooks --workers 2 against (a)'s 2 workers); CPU per webhook against both.

Usage: python -m bench.receiver [--seconds 6] [--connections 50]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

from redis import Redis

from bench import loadgen
from payhooks.devtools.embedded_redis import EmbeddedRedis, free_port
from payhooks.providers.stripe import sample as samples

SECRET = samples.DEV_WEBHOOK_SECRET
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Measurement:
    name: str
    acknowledged: int
    per_second: float
    p50_ms: float
    p99_ms: float
    server_cpu_us: float
    redis_cpu_us: float
    errors: int
    acknowledged_total: int


def _cpu_seconds(pid: int) -> float:
    """CPU time of a process and all its descendants, from /proc."""
    total = 0.0
    stack = [pid]
    while stack:
        current = stack.pop()
        try:
            fields = Path(f"/proc/{current}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
            for task in Path(f"/proc/{current}/task").iterdir():
                children = (task / "children").read_text().split()
                stack.extend(int(c) for c in children)
        except (FileNotFoundError, ProcessLookupError):
            continue
    return total


def _wait_for_port(port: int, process: subprocess.Popen[bytes], seconds: float = 20) -> None:
    import socket

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listening on {port}")


def signed_webhooks(count: int) -> list[tuple[bytes, dict[str, str]]]:
    """(body, headers) of ``count`` distinct signed Stripe payment_intent.succeeded
    webhooks (675 bytes each), as every receiver benchmark sends them."""
    webhooks = []
    for n in range(count):
        intent = samples.payment_intent(invoice_id=1000 + n % 500, amount=Decimal("100.00"))
        body = json.dumps(samples.event("payment_intent.succeeded", intent)).encode()
        webhooks.append(samples.signed(body, SECRET))
    return webhooks


def _wait_until_settled(pid: int, seconds: float = 30) -> None:
    """Until the server's processes have finished starting: a port answers as soon as one
    process listens, while the others of ``--workers 2`` or gunicorn's may still be
    importing, on the cores the load then needs. Settled: under a tenth of a core used
    over a quarter of a second."""
    deadline = time.monotonic() + seconds
    before = _cpu_seconds(pid)
    while time.monotonic() < deadline:
        time.sleep(0.25)
        now = _cpu_seconds(pid)
        if now - before < 0.025:
            return
        before = now
    raise RuntimeError(f"server {pid} still busy {seconds:.0f} s after it began listening")


def build_requests(port: int, count: int) -> list[bytes]:
    return [
        loadgen.build_request("127.0.0.1", port, "/webhooks/stripe", body, headers)
        for body, headers in signed_webhooks(count)
    ]


def measure(
    name: str,
    command: list[str],
    env: dict[str, str],
    port: int,
    redis: EmbeddedRedis,
    args: argparse.Namespace,
    requests: list[bytes],
) -> Measurement:
    server = subprocess.Popen(
        command,
        env={**os.environ, **env},
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_for_port(port, server)
        _wait_until_settled(server.pid)
        redis_pid = redis._process.pid if redis._process else 0
        cpu_before, redis_before = _cpu_seconds(server.pid), _cpu_seconds(redis_pid)
        result = asyncio.run(
            loadgen.run(
                "127.0.0.1",
                port,
                requests,
                connections=args.connections,
                seconds=args.seconds,
                warmup=1.0,
            )
        )
        cpu_used = _cpu_seconds(server.pid) - cpu_before
        redis_used = _cpu_seconds(redis_pid) - redis_before
    finally:
        server.terminate()
        server.wait(timeout=30)
    ok = result.statuses.get(200, 0)
    # CPU covers the warm-up too: divide by every answer, not only the measured ones.
    total_answers = max(result.answered_total, 1)
    latencies = sorted(result.latencies)
    return Measurement(
        name=name,
        acknowledged=ok,
        per_second=ok / result.seconds if result.seconds else 0.0,
        p50_ms=statistics.median(latencies) * 1000,
        p99_ms=latencies[int(len(latencies) * 0.99) - 1] * 1000,
        server_cpu_us=cpu_used / total_answers * 1e6,
        redis_cpu_us=redis_used / total_answers * 1e6,
        acknowledged_total=result.acknowledged_total,
        errors=sum(v for k, v in result.statuses.items() if k != 200),
    )


def _median(name: str, measured: list[Measurement]) -> Measurement:
    def mid(values: list[float]) -> float:
        return float(statistics.median(values))

    return Measurement(
        name=name,
        acknowledged=int(mid([m.acknowledged for m in measured])),
        per_second=mid([m.per_second for m in measured]),
        p50_ms=mid([m.p50_ms for m in measured]),
        p99_ms=mid([m.p99_ms for m in measured]),
        server_cpu_us=mid([m.server_cpu_us for m in measured]),
        redis_cpu_us=mid([m.redis_cpu_us for m in measured]),
        errors=sum(m.errors for m in measured),
        acknowledged_total=sum(m.acknowledged_total for m in measured),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="rounds, the stacks interleaved; the median of each figure is reported",
    )
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--requests", type=int, default=60_000)
    args = parser.parse_args()

    port = free_port()
    print(f"building {args.requests} signed, distinct webhooks...", flush=True)
    requests = build_requests(port, args.requests)
    python = sys.executable
    serve = [python, "-m", "payhooks.cli", "serve", "--host", "127.0.0.1", "--port", str(port)]
    serve_env = {"STRIPE_WEBHOOK_SECRETS": SECRET, "LOG_FORMAT": "json", "LOG_LEVEL": "INFO"}
    stacks = [
        ("payhooks serve", serve, serve_env),
        ("payhooks serve -w 2", [*serve, "--workers", "2"], serve_env),
        (
            "(a) flask+gunicorn+rq",
            [
                python,
                "-m",
                "gunicorn",
                "-w",
                "2",
                "-b",
                f"127.0.0.1:{port}",
                "--log-level",
                "warning",
                "bench.flask_app:app",
            ],
            {"BENCH_STRIPE_SECRET": SECRET},
        ),
        (
            "(b) bare aiohttp+LPUSH",
            [python, "-m", "bench.bare_app", str(port), "{redis}", SECRET],
            {},
        ),
    ]
    rounds: dict[str, list[Measurement]] = {name: [] for name, _, _ in stacks}
    for round_number in range(1, args.rounds + 1):
        # Each round starts at another stack, so that none always runs after the same one
        # (the one before can leave the machine warmer or busier).
        shift = (round_number - 1) % len(stacks)
        for name, command, env in stacks[shift:] + stacks[:shift]:
            with EmbeddedRedis() as redis:
                command = [part.replace("{redis}", redis.url) for part in command]
                env = {**env, "REDIS_URL": redis.url, "BENCH_REDIS_URL": redis.url}
                print(
                    f"round {round_number}: {name}, {args.seconds:.0f}s at "
                    f"{args.connections} connections...",
                    flush=True,
                )
                measurement = measure(name, command, env, port, redis, args, requests)
                if name.startswith("payhooks serve"):
                    queued = Redis.from_url(redis.url).llen("rq:queue:payhooks")
                    print(
                        f"  check: {queued} RQ jobs queued for "
                        f"{measurement.acknowledged_total} acknowledged webhooks"
                    )
                    if queued != measurement.acknowledged_total:
                        raise SystemExit("acknowledged webhooks and queued jobs differ")
                rounds[name].append(measurement)
    report(rounds, args.rounds)


def _round_ratios(tops: list[Measurement], bottoms: list[Measurement], figure: str) -> list[float]:
    """Each round's own ratio, sorted: a ratio within one round compares stacks measured
    within a minute of each other, so the machine's drift between rounds (a shared VM's
    CPU per request moves by a fifth and more) does not enter it."""
    return sorted(
        getattr(top, figure) / getattr(bottom, figure)
        for top, bottom in zip(tops, bottoms, strict=True)
    )


def _ratios(values: list[float]) -> str:
    return f"{statistics.median(values):5.2f}x   (rounds {values[0]:.2f}-{values[-1]:.2f})"


def _verdict(met: bool) -> str:
    return "met" if met else "NOT met"


def report(rounds: dict[str, list[Measurement]], count: int) -> None:
    results = [_median(name, measured) for name, measured in rounds.items()]
    print(f"\nmedian of {count} rounds:")
    print(
        f"{'stack':<24} {'acked/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'CPU us/webhook':>15} "
        f"{'redis us':>9} {'errors':>7}"
    )
    for m in results:
        print(
            f"{m.name:<24} {m.per_second:>9.0f} {m.p50_ms:>8.2f} {m.p99_ms:>8.2f} "
            f"{m.server_cpu_us:>15.0f} {m.redis_cpu_us:>9.0f} {m.errors:>7}"
        )
    ours, ours_two, flask, bare = rounds.values()
    median_ours = results[0]
    equal = _round_ratios(ours_two, flask, "per_second")
    cpu = _round_ratios(ours, bare, "server_cpu_us")
    print("\nratios: the median of each round's own, and their range")
    throughput = _round_ratios(ours, flask, "per_second")
    print(f"throughput vs (a):       {_ratios(throughput)}  (target >= 3x)")
    per_process = [2 * ratio for ratio in throughput]
    print(f"  per process:           {_ratios(per_process)}  (1 payhooks process, each of (a)'s 2)")
    print(
        f"  at equal processes:    {_ratios(equal)}  (payhooks --workers 2 against (a)'s 2 "
        f"workers; target >= 5x: {_verdict(statistics.median(equal) >= 5)})"
    )
    print(
        f"CPU per webhook vs (b):  {_ratios(cpu)}  "
        f"(target <= 1.5x: {_verdict(statistics.median(cpu) <= 1.5)})"
    )
    print(f"CPU per webhook vs (a):  {_ratios(_round_ratios(ours, flask, 'server_cpu_us'))}")
    print(
        f"p99 latency:             {median_ours.p99_ms:5.1f} ms (median of rounds "
        f"{min(m.p99_ms for m in ours):.1f}-{max(m.p99_ms for m in ours):.1f}; "
        f"target < 20 ms: {_verdict(median_ours.p99_ms < 20)})"
    )


if __name__ == "__main__":
    main()
