"""The receiver's composition root: ``create_app(settings)``."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping

import prometheus_client
from aiohttp import web
from redis.asyncio import Redis
from redis.exceptions import RedisError

from payhooks.providers.kit.receiver_errors import WebhookError
from payhooks.providers.kit.receiving import WebhookProvider
from payhooks.providers.receivers import build_providers
from payhooks.settings import Settings
from payhooks.storage import eviction_policy, redis_connect
from payhooks.storage.jobs import JobFactory
from service import cluster_metrics, metrics
from service.handlers import webhook_handler
from service.inbox import EventInbox
from service.intake import PendingBodies, ReadLimits
from service.quarantine import Quarantine

SETTINGS = web.AppKey("settings", Settings)
INBOX = web.AppKey("inbox", EventInbox)
REDIS = web.AppKey("redis", Redis)
LIMITS = web.AppKey("limits", ReadLimits)


def create_app(
    settings: Settings,
    *,
    redis: Redis | None = None,
    providers: Mapping[str, WebhookProvider] | None = None,
    limits: ReadLimits | None = None,
) -> web.Application:
    # No middleware: it would wrap every webhook; handlers answer their own errors.
    limits = limits or ReadLimits()
    app = web.Application(client_max_size=limits.max_body_bytes)
    app[LIMITS] = limits
    budget = PendingBodies(limits.pending_bytes)
    app[SETTINGS] = settings
    providers = build_providers(settings) if providers is None else providers

    if redis is None:
        redis = redis_connect.async_client(
            settings,
            socket_connect_timeout=2,
            socket_timeout=5,
            health_check_interval=30,
        )
    inbox = EventInbox(
        redis,
        JobFactory(settings),
        event_ttl_seconds=settings.event_ttl_seconds,
        ack_replicas=settings.redis_ack_replicas,
        ack_timeout_ms=settings.redis_ack_timeout_ms,
    )
    app[INBOX] = inbox
    quarantine = Quarantine(
        redis,
        ttl_seconds=settings.event_ttl_seconds,
        ack_replicas=settings.redis_ack_replicas,
        ack_timeout_ms=settings.redis_ack_timeout_ms,
    )
    app[REDIS] = redis

    async def redis_ctx(app: web.Application) -> AsyncIterator[None]:
        await inbox.prepare()
        yield
        await redis.aclose()

    app.cleanup_ctx.append(redis_ctx)
    for name, provider in providers.items():
        handler = webhook_handler(provider, inbox, quarantine, limits, budget)
        if provider.url_tokens:
            # Every method, so that without the token nothing (a 405 either) tells the URL
            # exists; the bare URL stays, refused like a wrong token and counted, so a sender
            # still posting there (an old IPN notify_url) shows in the metrics.
            app.router.add_route("*", f"/webhooks/{name}", handler)
            app.router.add_route("*", f"/webhooks/{name}/{{token}}", handler)
        else:
            app.router.add_route(provider.method, f"/webhooks/{name}", handler)
        if provider.answer_challenge is not None:  # Braintree's legacy check: GET ?bt_challenge=
            app.router.add_get(f"/webhooks/{name}", challenge_handler(provider.answer_challenge))
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics_view)
    return app


def challenge_handler(
    answer: Callable[[str], str],
) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def handle(request: web.Request) -> web.Response:
        challenge = request.query.get("bt_challenge", "")
        if not challenge:
            return web.json_response({"error": "missing bt_challenge"}, status=400)
        try:
            return web.Response(text=answer(challenge))
        except WebhookError as exc:
            return web.json_response({"error": exc.code, "reason": exc.message}, status=400)

    return handle


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    if not await request.app[INBOX].ping():
        return web.json_response(
            {"status": "unavailable", "reason": "redis unreachable"}, status=503
        )
    try:
        problem = await eviction_policy.check_async(request.app[REDIS])
    except (RedisError, OSError):
        problem = "redis unreachable"
    if problem is not None:
        # Out of the load balancer: a webhook acknowledged here could be evicted unapplied.
        return web.json_response({"status": "unavailable", "reason": problem}, status=503)
    return web.json_response({"status": "ready"})


async def metrics_view(request: web.Request) -> web.Response:
    try:
        cluster = await cluster_metrics.render(request.app[REDIS], request.app[SETTINGS].queue_name)
        metrics.REDIS_UP.set(1)
    except (RedisError, OSError):
        cluster = b""
        metrics.REDIS_UP.set(0)
    body = metrics.render_local() + cluster
    return web.Response(body=body, headers={"Content-Type": prometheus_client.CONTENT_TYPE_LATEST})
