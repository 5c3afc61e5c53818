"""Helpers shared by the worker tests."""

from __future__ import annotations

import json
from typing import Any

from redis import Redis
from rq import Queue, SimpleWorker

from payhooks.devtools.samples.deliver import deliver_bodies
from payhooks.devtools.sandbox.nexudus import SandboxState
from payhooks.settings import Settings
from service.inbox import Accepted


def deliver(settings: Settings, *events: dict[str, Any]) -> list[Accepted]:
    """Queue Stripe events exactly as the receiver does after verifying them."""
    return deliver_bodies(settings, "stripe", [json.dumps(e).encode() for e in events])


def api_calls(state: SandboxState) -> list[tuple[str, str, int]]:
    return [(c.method, c.path, c.status) for c in state.calls]


def writes(state: SandboxState, method: str | None = None) -> list[tuple[str, str, int]]:
    return [
        (c.method, c.path, c.status)
        for c in state.calls
        if c.write and c.status == 200 and (method is None or c.method == method)
    ]


def run_burst_worker(settings: Settings, redis: Redis, queue: Queue) -> None:
    """Drain the queue with a worker built from these settings (not the fixture's)."""
    from workers import context

    ctx = context.build_context(settings)
    previous = context.install(ctx)
    try:
        SimpleWorker([queue], connection=redis).work(burst=True)
    finally:
        context.install(previous)
        ctx.close()
