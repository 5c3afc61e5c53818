"""Where `payhooks serve` spends its CPU on the webhook path: a py-spy flame graph of the
server under bench.receiver's load (signed, distinct Stripe payment_intent.succeeded
webhooks at 50 connections, JSON logs at INFO), sampled after a warm-up.

Usage: python -m bench.flame [--seconds 7] [--out docs/receiver-flame.svg]
py-spy (the bench group) needs to be allowed to read the server's memory (ptrace: root, or
kernel.yama.ptrace_scope 0).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

from bench import loadgen
from bench.receiver import ROOT, SECRET, _wait_for_port, build_requests
from payhooks.devtools.embedded_redis import EmbeddedRedis, free_port

WARMUP_SECONDS = 1.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=7.0)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "receiver-flame.svg")
    args = parser.parse_args()
    port = free_port()
    requests = build_requests(port, 60_000)
    py_spy = Path(sys.executable).with_name("py-spy")
    with EmbeddedRedis() as redis:
        server = subprocess.Popen(
            [sys.executable, "-m", "payhooks.cli", "serve", "--host", "127.0.0.1"]
            + ["--port", str(port)],
            env={
                **os.environ,
                "STRIPE_WEBHOOK_SECRETS": SECRET,
                "LOG_FORMAT": "json",
                "LOG_LEVEL": "INFO",
                "REDIS_URL": redis.url,
            },
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            _wait_for_port(port, server)
            load = loadgen.run(
                "127.0.0.1",
                port,
                requests,
                connections=args.connections,
                seconds=args.seconds + 2 * WARMUP_SECONDS,
                warmup=WARMUP_SECONDS,
            )

            async def sampled() -> None:
                running = asyncio.ensure_future(load)
                await asyncio.sleep(WARMUP_SECONDS)
                spy = await asyncio.create_subprocess_exec(
                    str(py_spy),
                    "record",
                    "--pid",
                    str(server.pid),
                    "--duration",
                    str(int(args.seconds)),
                    "--rate",
                    "250",
                    "--format",
                    "flamegraph",
                    "--output",
                    str(args.out),
                    "--nonblocking",
                )
                await spy.wait()
                result = await running
                print(f"{result.acknowledged_total} webhooks acknowledged; {args.out}")

            started = time.monotonic()
            asyncio.run(sampled())
            print(f"{time.monotonic() - started:.1f} s")
        finally:
            server.terminate()
            server.wait(timeout=30)


if __name__ == "__main__":
    main()
