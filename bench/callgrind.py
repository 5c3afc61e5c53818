"""Instructions per webhook, counted by callgrind in the server process alone: a figure
the machine's load does not move (bench.receiver's CPU times do, by ±15% on a shared
machine). `payhooks serve` (JSON logs at INFO) and the bare floor (b) each run under
valgrind; signed, distinct 675-byte Stripe ``payment_intent.succeeded`` webhooks at 50
connections, a warm-up first, then the counters are zeroed (``callgrind_control -z``),
the measured webhooks sent, and the counts dumped (``-d``) and divided by them.

Usage: python -m bench.callgrind [--webhooks 3000] [--warmup 600] [--stacks payhooks,bare]
                                [--log-level INFO]
Needs valgrind (callgrind_control) on PATH. Each stack takes a minute or two.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from bench import loadgen
from bench.receiver import ROOT, SECRET, _wait_for_port, build_requests
from payhooks.devtools.embedded_redis import EmbeddedRedis, free_port


def _send(port: int, requests: list[bytes], connections: int) -> int:
    result = asyncio.run(
        loadgen.run("127.0.0.1", port, requests, connections=connections, seconds=3600, warmup=0)
    )
    if result.acknowledged_total != len(requests):
        raise RuntimeError(f"{result.acknowledged_total} of {len(requests)} acknowledged")
    return result.acknowledged_total


def _instructions(dump: Path) -> int:
    match = re.search(r"^(?:summary|totals): (\d+)", dump.read_text(), re.MULTILINE)
    if match is None:
        raise RuntimeError(f"no totals in {dump}")
    return int(match.group(1))


def measure(stack: str, args: argparse.Namespace) -> float:
    port = free_port()
    requests = build_requests(port, args.warmup + args.webhooks)
    out_dir = Path(tempfile.mkdtemp(prefix="payhooks-callgrind-"))
    python = sys.executable
    with EmbeddedRedis() as redis:
        if stack == "payhooks":
            command = [python, "-m", "payhooks.cli", "serve", "--host", "127.0.0.1"]
            command += ["--port", str(port)]
        else:
            command = [python, "-m", "bench.bare_app", str(port), redis.url, SECRET]
        env = {
            **os.environ,
            "STRIPE_WEBHOOK_SECRETS": SECRET,
            "LOG_FORMAT": "json",
            "LOG_LEVEL": args.log_level,
            "REDIS_URL": redis.url,
        }
        out = out_dir / "callgrind.out"
        server = subprocess.Popen(
            ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", *command],
            env=env,
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            _wait_for_port(port, server, seconds=300)  # Python starts slowly under valgrind
            _send(port, requests[: args.warmup], args.connections)
            subprocess.run(["callgrind_control", "-z", str(server.pid)], check=True, cwd=out_dir)
            sent = _send(port, requests[args.warmup :], args.connections)
            subprocess.run(["callgrind_control", "-d", str(server.pid)], check=True, cwd=out_dir)
            dumps = sorted(out_dir.glob("callgrind.out.*"), key=lambda p: p.stat().st_mtime)
            if not dumps:
                raise RuntimeError(f"no dump in {out_dir}")
            per_webhook = _instructions(dumps[-1]) / sent
        finally:
            server.terminate()
            server.wait(timeout=120)
            shutil.rmtree(out_dir, ignore_errors=True)
    print(f"{stack:<10} {sent} webhooks  {per_webhook / 1000:8.0f}k instructions per webhook")
    return per_webhook


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--webhooks", type=int, default=3000)
    parser.add_argument("--warmup", type=int, default=600)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--stacks", default="payhooks,bare")
    parser.add_argument(
        "--log-level", default="INFO", help="payhooks' (WARNING: no line per webhook)"
    )
    args = parser.parse_args()
    measured = {stack: measure(stack, args) for stack in args.stacks.split(",")}
    if "payhooks" in measured and "bare" in measured:
        ratio = measured["payhooks"] / measured["bare"]
        print(f"against the bare floor: {ratio:.2f}x (target <= 1.5x)")


if __name__ == "__main__":
    main()
