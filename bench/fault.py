"""Fault test: every acknowledged webhook is applied exactly once, whatever fails.

Sends N signed Stripe webhooks (several events per payment, some delivered twice, some
payments short of the invoice, some refunded in full) through a real `payhooks serve` to
real `payhooks worker` processes, while the Nexudus sandbox fails 20% of requests (some
after writing), throttles writes, and one worker is killed (SIGKILL, with its work horse)
and replaced. At the end it counts, from the sandbox's own records and the event trail:
one token per (invoice, payment), PaidOn on every fully paid invoice and on no other, no
event lost. A refunded payment's events arrive in any order with its refund: its invoice
ends unpaid, or paid with the refund's job failed for a person (PaymentReversed), never
paid unseen.

Usage: python -m bench.fault [--webhooks 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from decimal import Decimal
from typing import Any

import httpx
from redis import Redis
from rq import Queue
from rq.job import Job
from rq.registry import FailedJobRegistry, ScheduledJobRegistry, StartedJobRegistry

from payhooks.devtools.embedded_redis import EmbeddedRedis, free_port
from payhooks.devtools.process_tree import kill_tree
from payhooks.devtools.sandbox.nexudus import SandboxState, create_sandbox_app, invoice_record
from payhooks.devtools.sandbox.server import ThreadedServer, wait_until_ready
from payhooks.providers.stripe import sample as samples
from payhooks.storage.jobs import event_key_of
from payhooks.storage.trail import Trail

TERMINAL = {
    "applied",
    "partially_paid",
    "already_applied",
    "reversed",
    "token_only",
    "no_write",
    "ignored",
    "failed",
}


def build_webhooks(total: int, rng: random.Random) -> tuple[list[dict[str, Any]], dict[int, str]]:
    """Events for payments of invoices 1000..: (events to send, invoice ->
    'full'|'short'|'refunded')."""
    events: list[dict[str, Any]] = []
    plan: dict[int, str] = {}
    invoice_id = 1000
    while len(events) < total:
        roll = rng.random()
        short, refunded = roll < 0.1, 0.1 <= roll < 0.2
        amount = Decimal("40.00") if short else Decimal("100.00")
        intent = samples.payment_intent(invoice_id=invoice_id, amount=amount)
        group = [
            samples.event("payment_intent.succeeded", intent),
            samples.event("charge.succeeded", samples.charge(intent)),
        ]
        if rng.random() < 0.5:
            group.append(samples.event("invoice.paid", samples.invoice_paid(intent)))
        if rng.random() < 0.3:
            processing = dict(intent, status="processing", amount_received=0)
            group.insert(0, samples.event("payment_intent.processing", processing))
        if refunded:
            charge = dict(samples.charge(intent), amount_refunded=intent["amount"], refunded=True)
            group.append(samples.event("charge.refunded", charge))
        group += [e for e in group if rng.random() < 0.25]  # redeliveries
        events += group
        plan[invoice_id] = "short" if short else "refunded" if refunded else "full"
        invoice_id += 1
    rng.shuffle(events)
    return events, plan


async def send(url: str, secret: str, events: list[dict[str, Any]]) -> Counter[int]:
    statuses: Counter[int] = Counter()
    semaphore = asyncio.Semaphore(20)
    async with httpx.AsyncClient(timeout=30) as client:

        async def one(event: dict[str, Any]) -> None:
            body, headers = samples.signed(event, secret)
            async with semaphore:
                for _ in range(5):  # as Stripe does, retry what is not acknowledged
                    response = await client.post(url, content=body, headers=headers)
                    statuses[response.status_code] += 1
                    if response.is_success:
                        return
                    await asyncio.sleep(0.5)

        await asyncio.gather(*(one(e) for e in events))
    return statuses


def start_worker(env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "payhooks.cli", "worker"],
        env=env,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--webhooks", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=20261121)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    events, plan = build_webhooks(args.webhooks, rng)

    state = SandboxState(fail_rate=0.2, writes_per_minute=900, calls_per_minute=100_000)
    for invoice_id in plan:
        state.invoices[invoice_id] = invoice_record(invoice_id)
    sandbox = ThreadedServer(lambda: create_sandbox_app(state)).start()
    secret = samples.DEV_WEBHOOK_SECRET
    port = free_port()
    started = time.monotonic()
    with EmbeddedRedis() as redis_server:
        env = {
            **os.environ,
            "REDIS_URL": redis_server.url,
            "STRIPE_WEBHOOK_SECRETS": secret,
            "STRIPE_ALLOW_TEST_MODE": "true",  # the samples are test-mode events
            "NEXUDUS_BASE_URL": sandbox.url,
            "NEXUDUS_USERNAME": state.username,
            "NEXUDUS_PASSWORD": state.password,
            "NEXUDUS_WRITES_PER_MINUTE": "100000",
            "NEXUDUS_CALLS_PER_MINUTE": "100000",
            "NEXUDUS_MIN_INTERVAL_MS": "0",
            "JOB_MAX_ATTEMPTS": "40",
            "JOB_RETRY_BASE_SECONDS": "1",
            # Short waits between tries in place: 20% of calls fail, by design.
            "JOB_RETRY_IN_PLACE_FIRST_MS": "50",
            "JOB_RETRY_MAX_SECONDS": "4",
            "JOB_TIMEOUT_SECONDS": "30",
            "WORKER_MAINTENANCE_SECONDS": "10",
            "LOG_LEVEL": "WARNING",
        }
        receiver = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "payhooks.cli",
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
            ],
            env=env,
            start_new_session=True,
            stderr=subprocess.DEVNULL,
        )
        workers = [start_worker(env), start_worker(env)]
        redis = Redis.from_url(redis_server.url)
        try:
            if not wait_until_ready(f"http://127.0.0.1:{port}/readyz"):
                print("the receiver did not start")
                return 1
            sending = asyncio.run(send(f"http://127.0.0.1:{port}/webhooks/stripe", secret, events))
            print(f"sent {len(events)} webhooks for {len(plan)} invoices: HTTP {dict(sending)}")

            # Kill a worker while it works, the way a node dies, and start another.
            time.sleep(3)
            kill_tree(workers[0].pid)
            workers[0].wait()
            workers[0] = start_worker(env)
            print("killed worker 1 (SIGKILL, with its work horse) and started a replacement")

            queue = Queue("payhooks", connection=redis)
            registries = [StartedJobRegistry(queue=queue), ScheduledJobRegistry(queue=queue)]
            deadline = time.monotonic() + 600
            while time.monotonic() < deadline:
                # cleanup=False: counting must not run RQ's registry cleanup itself. Workers
                # take turns at it (a maintenance lock); a cleanup from here raced theirs,
                # retried a killed worker's job twice, and one run's end removed the other's
                # started entry while it still ran, so the queue looked drained too early.
                busy = queue.count + sum(len(r.get_job_ids(cleanup=False)) for r in registries)
                if busy == 0:
                    break
                time.sleep(1)
            else:
                print("timed out waiting for the queue to drain")
                return 1
            return report(redis, state, plan, events, started)
        finally:
            stop([*workers, receiver], grace_seconds=int(env["JOB_TIMEOUT_SECONDS"]) + 30)
            sandbox.stop()


def stop(processes: list[subprocess.Popen[bytes]], grace_seconds: float) -> None:
    """SIGTERM to all at once (a worker finishes its job, up to the job timeout), then
    SIGKILL to each process group still there: none outlives the run, whatever happened."""
    for process in processes:
        if process.poll() is None:
            os.kill(process.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_seconds
    for process in processes:
        try:
            process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            print(
                f"{' '.join(map(str, process.args[2:4]))} (pid {process.pid}) did not stop "
                f"within {grace_seconds:.0f} s of SIGTERM: killed"
            )
            kill_tree(process.pid)
            process.wait()


def report(
    redis: Redis,
    state: SandboxState,
    plan: dict[int, str],
    events: list[dict[str, Any]],
    started: float,
) -> int:
    trail = Trail(redis, ttl_seconds=3600)
    unique = {e["id"]: e for e in events}
    final = Counter()
    lost = []
    for event_id in unique:
        history = trail.history(f"stripe:{event_id}")
        stages = [h["stage"] for h in history]
        terminal = [s for s in stages if s in TERMINAL]
        if not terminal and "ignored" not in stages:
            lost.append(event_id)
        final[terminal[-1] if terminal else "none"] += 1

    tokens = Counter((t["CoworkerInvoiceId"], t["Token"]) for t in state.tokens.values())
    duplicates = sum(n - 1 for n in tokens.values() if n > 1)
    payments = {
        (inv, e["data"]["object"].get("payment_intent") or e["data"]["object"]["id"])
        for e in events
        for inv in [int(e["data"]["object"]["metadata"]["nexudus_invoice_id"])]
    }
    refunded = [i for i, kind in plan.items() if kind == "refunded"]
    # A refund seen first stops its payment before its token: only kept payments must have one.
    missing_tokens = len({p for p in payments if p[0] not in refunded} - set(tokens))
    puts = state.puts_applied
    full = [i for i, kind in plan.items() if kind == "full"]
    short = [i for i, kind in plan.items() if kind == "short"]
    unpaid_full = [i for i in full if not state.invoices[i]["PaidOn"]]
    paid_short = [i for i in short if state.invoices[i]["PaidOn"]]
    failed_ids = FailedJobRegistry(queue=Queue("payhooks", connection=redis)).get_job_ids()
    failures = {
        # The last failure of the job (a redelivery may have been noted after it).
        j: [
            h
            for h in trail.history(str(event_key_of(Job.fetch(j, connection=redis))))
            if h["stage"] == "failed"
        ][-1]
        for j in failed_ids
    }
    failed_reasons = Counter(f.get("error_class") for f in failures.values())
    flagged = {
        int(Job.fetch(j, connection=redis).meta["failure"]["invoice_id"])
        for j, f in failures.items()
        if f.get("error_class") == "PaymentReversed"
    }
    paid_refunded = {i for i in refunded if state.invoices[i]["PaidOn"]}
    # A refund after PaidOn is flagged (PaymentReversed), and only then.
    unflagged = paid_refunded - flagged
    wrongly_flagged = flagged - paid_refunded
    # One flag per reversed payment: its refund's job and its own retry never both fail.
    duplicate_flags = failed_reasons["PaymentReversed"] - len(flagged)
    faults = Counter(c.status for c in state.calls)
    print(f"\nfinished in {time.monotonic() - started:.0f}s; Nexudus answers: {dict(faults)}")
    print(f"distinct events          {len(unique)}")
    print(f"final stages             {dict(final)}")
    print(
        f"payments                 {len(payments)}  tokens {len(state.tokens)}  "
        f"missing {missing_tokens}  duplicate tokens {duplicates}"
    )
    print(
        f"fully paid invoices      {len(full)}  PaidOn set {len(full) - len(unpaid_full)}  "
        f"missing {len(unpaid_full)}"
    )
    print(f"short-paid invoices      {len(short)}  PaidOn wrongly set {len(paid_short)}")
    print(
        f"refunded invoices        {len(refunded)}  stopped before PaidOn "
        f"{len(refunded) - len(paid_refunded)}  PaidOn then refund flagged {len(flagged)}  "
        f"unflagged {len(unflagged)}  wrongly flagged {len(wrongly_flagged)}  "
        f"flagged twice {duplicate_flags}"
    )
    print(
        f"failed jobs              {len(failed_ids)} {dict(failed_reasons)} (expected: "
        "PaymentReversed for each refund after PaidOn; a short payment is a partial payment)"
    )
    print(f"lost events              {len(lost)}")
    extra_puts = sum(n - 1 for n in puts.values() if n > 1)
    ok = (
        not lost
        and not duplicates
        and not missing_tokens
        and not unpaid_full
        and not paid_short
        and not set(failed_reasons) - {"PaymentReversed"}
        and not unflagged
        and not wrongly_flagged
        and not duplicate_flags
        and not extra_puts
    )
    print(
        f"invoice PUTs applied     {sum(puts.values())} on {len(puts)} invoices; "
        f"second PUTs {extra_puts}"
    )
    print("RESULT: exactly once" if ok else "RESULT: FAILED")

    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
