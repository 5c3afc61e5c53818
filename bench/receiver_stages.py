"""The receiver's own Python work per webhook, stage by stage, timed in-process: what
service/handlers.py does for one signed Stripe ``payment_intent.succeeded`` (675 bytes,
as bench.receiver sends them), with no HTTP and no Redis. Each stage runs over the same
distinct webhooks, in the handler's order, each one once per round (as a server sees
them: every job id computed afresh, then looked up again for the log line); the best of
the rounds is reported, in µs per webhook. The load of a shared machine moves these by a
few per cent; callgrind (bench.callgrind) gives the load-independent total.

Usage: python -m bench.receiver_stages [--webhooks 2000] [--rounds 7]
"""

from __future__ import annotations

import argparse
import io
import logging
import time
from collections.abc import Callable
from typing import Any

from multidict import CIMultiDict, CIMultiDictProxy

from bench.receiver import SECRET, signed_webhooks
from payhooks import logs
from payhooks.domain.events import Ignored, PaymentEvent
from payhooks.providers.receivers import build_providers
from payhooks.settings import Settings
from payhooks.storage import redis_keys
from payhooks.storage.jobs import JobFactory
from payhooks.storage.record_once import Accepted, RecordOnce
from service import handlers, metrics
from service.server import new_event_loop


class _Discard(io.TextIOBase):
    """Where the log lines go: written and dropped, as a pipe to a log shipper would."""

    def write(self, text: str) -> int:
        return len(text)


def _best(rounds: int, items: int, run: Callable[[], Any], before: Callable[[], Any]) -> float:
    """The fastest of ``rounds`` runs over all ``items``, in µs per item."""
    best = float("inf")
    for _ in range(rounds):
        before()
        started = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - started)
    return best / items * 1e6


def _nothing() -> None:
    pass


class Stages:
    """The handler's steps over ``webhooks`` distinct webhooks, each step's inputs made by
    the steps before it. Each step's results are dropped as it goes, as the server drops
    them: kept, they would be the cyclic GC's to traverse, a cost the server does not have.
    """

    def __init__(self, webhooks: int) -> None:
        settings = Settings.from_env({"STRIPE_WEBHOOK_SECRETS": SECRET})
        self.provider = build_providers(settings)["stripe"]
        self.record = RecordOnce(JobFactory(settings), event_ttl_seconds=settings.event_ttl_seconds)
        self.name = name = self.provider.name
        self.counters = {
            outcome: metrics.EVENTS.labels(name, outcome)
            for outcome in (*(a.value for a in Accepted), "ignored")
        }
        self.ack_seconds = metrics.ACK_SECONDS.labels(name)
        self.requests = [
            (body, CIMultiDictProxy(CIMultiDict(headers)))
            for body, headers in signed_webhooks(webhooks)
        ]
        provider = self.provider
        stored = [
            handlers.stored_webhook(provider, body, headers) for body, headers in self.requests
        ]
        normalised = [provider.normalise(body, headers) for body, headers in self.requests]
        events = [[e for e in items if isinstance(e, PaymentEvent)] for items in normalised]
        ignored = [[e for e in items if isinstance(e, Ignored)] for items in normalised]
        results = [[Accepted.QUEUED] * len(items) for items in events]
        self.batch = list(zip(stored, events, ignored, strict=True))
        self.outcomes = list(zip(events, results, ignored, strict=True))

    def verify(self) -> None:
        for body, headers in self.requests:
            self.provider.verify(body, headers)

    def redact(self) -> None:
        for body, _ in self.requests:
            self.provider.redact(body)

    def store(self) -> None:
        for body, headers in self.requests:
            handlers.stored_webhook(self.provider, body, headers)

    def normalise(self) -> None:
        for body, headers in self.requests:
            self.provider.normalise(body, headers)

    def calls(self) -> None:
        for webhook, events, ignored in self.batch:
            self.record.calls(webhook, events, ignored)

    def note(self) -> None:
        for events, results, ignored in self.outcomes:
            handlers._note_outcomes(self.name, events, results, ignored, self.counters)

    def answer(self) -> None:
        answer: dict[str, object] = {"status": "accepted", "queued": 1, "duplicates": 0}
        for _ in self.requests:
            handlers._json({**answer, "ignored": 0})

    def observe(self) -> None:
        for _ in self.requests:
            self.ack_seconds.observe(0.002)

    @staticmethod
    def fresh_job_ids() -> None:
        redis_keys.job_id.cache_clear()

    def calls_then_cached(self) -> None:
        """What the log line finds: each job id computed once already, by its calls."""
        redis_keys.job_id.cache_clear()
        self.calls()


def measure(webhooks: int, rounds: int) -> list[tuple[str, float]]:
    stages = Stages(webhooks)
    steps: list[tuple[str, Callable[[], Any], Callable[[], Any]]] = [
        ("verify (Stripe SDK)", stages.verify, _nothing),
        ("redact (check only)", stages.redact, _nothing),
        ("stored_webhook (redact, digest, zstd)", stages.store, _nothing),
        ("normalise", stages.normalise, _nothing),
        ("RecordOnce.calls", stages.calls, stages.fresh_job_ids),
        ("_note_outcomes, no log line", stages.note, stages.calls_then_cached),
    ]
    logging.getLogger().setLevel(logging.WARNING)
    figures = [(label, _best(rounds, webhooks, run, before)) for label, run, before in steps]

    # The log line as `payhooks serve` writes it: JSON, batched per turn of a uvloop loop.
    logs.configure("json", "INFO")
    handler = logging.getLogger().handlers[0]
    assert isinstance(handler, logs.LoopBatchedHandler)
    handler.setStream(_Discard())

    def note_and_write() -> None:
        stages.note()
        handler.write_pending()

    async def in_loop() -> float:
        return _best(rounds, webhooks, note_and_write, stages.calls_then_cached)

    loop = new_event_loop()
    try:
        figures.append(("_note_outcomes with the JSON line", loop.run_until_complete(in_loop())))
    finally:
        loop.close()
    figures.append(("the answer (_json)", _best(rounds, webhooks, stages.answer, _nothing)))
    figures.append(("ack histogram observe", _best(rounds, webhooks, stages.observe, _nothing)))
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--webhooks", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    figures = measure(args.webhooks, args.rounds)
    logs_excluded = [f for f in figures if f[0] != "_note_outcomes, no log line"]
    for label, micros in figures:
        print(f"{label:<40} {micros:7.1f} us")
    # Disjoint stages: redact is inside stored_webhook, the bare notes inside the logged.
    total = sum(m for label, m in logs_excluded if not label.startswith("redact"))
    print(f"{'total (stages without overlap)':<40} {total:7.1f} us")


if __name__ == "__main__":
    main()
