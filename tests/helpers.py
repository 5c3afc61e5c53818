"""Helpers shared by the worker tests."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from redis.asyncio import Redis as AsyncRedis

from payhooks.events import PaymentEvent
from payhooks.jobspec import JobFactory
from payhooks.sandbox.nexudus import SandboxState
from payhooks.settings import Settings
from service.inbox import Accepted, EventInbox
from service.providers import build_providers


def deliver(settings: Settings, *events: dict[str, Any]) -> list[Accepted]:
    """Queue Stripe events exactly as the receiver does after verifying them."""
    provider = build_providers(settings)["stripe"]

    async def run() -> list[Accepted]:
        redis = AsyncRedis.from_url(settings.require_redis())
        inbox = EventInbox(
            redis, JobFactory(settings), event_ttl_seconds=settings.event_ttl_seconds
        )
        results: list[Accepted] = []
        for event in events:
            normalised = provider.normalise(json.dumps(event).encode())
            results += await inbox.accept([n for n in normalised if isinstance(n, PaymentEvent)])
        await redis.aclose()
        return results

    return asyncio.run(run())


def api_calls(state: SandboxState) -> list[tuple[str, str, int]]:
    return [(c.method, c.path, c.status) for c in state.calls]


def writes(state: SandboxState, method: str | None = None) -> list[tuple[str, str, int]]:
    return [
        (c.method, c.path, c.status)
        for c in state.calls
        if c.write and c.status == 200 and (method is None or c.method == method)
    ]
