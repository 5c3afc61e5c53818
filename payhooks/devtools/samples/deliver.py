"""Queue provider bodies exactly as the receiver does once they are verified.

For tests and benchmarks that exercise the worker without going through HTTP.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence

from payhooks.domain.events import Ignored, PaymentEvent
from payhooks.providers.receivers import build_providers
from payhooks.settings import Settings
from payhooks.storage import redis_connect
from payhooks.storage.jobs import JobFactory
from payhooks.storage.trail import StoredWebhook
from service.inbox import Accepted, EventInbox


def deliver_bodies(
    settings: Settings,
    provider_name: str,
    bodies: list[bytes],
    headers: dict[str, str] | None = None,
) -> list[Accepted]:
    return deliver_webhooks(settings, provider_name, [(body, headers or {}) for body in bodies])


def deliver_webhooks(
    settings: Settings,
    provider_name: str,
    webhooks: Sequence[tuple[bytes, Mapping[str, str]]],
) -> list[Accepted]:
    """Each body with its own headers (a signed request's are not the next one's), in one
    go: the headers given are those kept with the body."""
    provider = build_providers(settings)[provider_name]
    return queue_events(
        settings,
        [
            (
                StoredWebhook.of(provider_name, body, dict(headers), provider.redact(body)),
                provider.normalise(body, headers),
            )
            for body, headers in webhooks
        ],
    )


def queue_events(
    settings: Settings,
    webhooks: Sequence[tuple[StoredWebhook, Sequence[PaymentEvent | Ignored]]],
) -> list[Accepted]:
    """Accept each webhook's normalised events as the receiver's inbox does, in order."""

    async def run() -> list[Accepted]:
        redis = redis_connect.async_client(settings)
        inbox = EventInbox(
            redis, JobFactory(settings), event_ttl_seconds=settings.event_ttl_seconds
        )
        results: list[Accepted] = []
        for webhook, normalised in webhooks:
            results += await inbox.accept(
                webhook,
                [n for n in normalised if isinstance(n, PaymentEvent)],
                [n for n in normalised if isinstance(n, Ignored)],
            )
        await redis.aclose()
        return results

    return asyncio.run(run())
