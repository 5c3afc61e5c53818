"""The worker's composition root: everything a job needs, built once per process."""

from __future__ import annotations

import os
import secrets
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx
from redis import Redis

from payhooks.providers.kit.polling import PollIntake
from payhooks.providers.kit.steps import ProviderStep
from payhooks.providers.pollers import POLLERS
from payhooks.providers.worker_steps import build_steps
from payhooks.settings import Settings
from payhooks.storage import redis_connect
from payhooks.storage.trail import Trail
from payhooks.storage.worker_metrics import WorkerMetrics
from workers.breaker import Breaker, BreakerConfig
from workers.invoice_ledger import InvoiceLedger
from workers.markers import Markers
from workers.nexudus import NexudusClient
from workers.nexudus_auth import NexudusAuth
from workers.polls import Task
from workers.ratelimit import RateLimiter
from workers.reconcile import scheduled_tasks


@dataclass
class WorkerContext:
    settings: Settings
    redis: Redis
    nexudus: NexudusClient
    ledger: InvoiceLedger
    markers: Markers
    #: Per provider: confirm or complete an event with the provider's API before it is applied
    #: (each provider's step.py, payhooks/providers/).
    provider_steps: Mapping[str, ProviderStep]
    http: httpx.Client
    trail: Trail
    metrics: WorkerMetrics
    #: The scheduled tasks these settings turn on (a provider's poll), by name.
    tasks: Mapping[str, Task]

    def close(self) -> None:
        self.http.close()
        self.redis.close()


def build_context(settings: Settings, pollers: Mapping[str, PollIntake] = POLLERS) -> WorkerContext:
    settings.check_worker()
    redis = redis_connect.sync_client(settings, socket_timeout=10, socket_connect_timeout=5)
    http = nexudus_http(settings)
    metrics = WorkerMetrics(redis)
    trail = Trail(redis, ttl_seconds=settings.event_ttl_seconds)
    limiter = RateLimiter.for_nexudus(redis, settings, on_wait=metrics.throttle_wait)
    nexudus = nexudus_client(settings, redis, http, limiter, metrics)
    return WorkerContext(
        settings=settings,
        redis=redis,
        nexudus=nexudus,
        ledger=InvoiceLedger(redis),
        markers=Markers(
            redis,
            lock_seconds=settings.job_timeout_seconds,
            ack_replicas=settings.redis_ack_replicas,
            ack_timeout_ms=settings.redis_ack_timeout_ms,
        ),
        provider_steps=build_steps(settings, redis, trail),
        http=http,
        trail=trail,
        metrics=metrics,
        tasks=scheduled_tasks(settings, redis, metrics, pollers),
    )


def nexudus_http(settings: Settings, **options: Any) -> httpx.Client:
    """The HTTP client Nexudus is called with (``options``: httpx's, an event hook say)."""
    return httpx.Client(
        base_url=settings.nexudus_base_url,
        timeout=settings.nexudus_timeout_seconds,
        headers={"User-Agent": "payhooks"},
        **options,
    )


def nexudus_client(
    settings: Settings,
    redis: Redis,
    http: httpx.Client,
    limiter: RateLimiter,
    metrics: WorkerMetrics,
) -> NexudusClient:
    """A Nexudus client sharing the workers' bearer token, breaker and (through
    ``limiter``'s Redis windows) rate limits."""
    username, password = settings.nexudus_credentials()
    auth = NexudusAuth(
        redis,
        http,
        username=username,
        password=password,
        http_timeout_seconds=settings.nexudus_timeout_seconds,
    )
    breaker = Breaker(
        redis,
        BreakerConfig.from_settings(settings),
        caller=f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}",
    )
    return NexudusClient(http, auth, limiter, breaker=breaker, metrics=metrics)


_current: WorkerContext | None = None


def install(context: WorkerContext | None) -> WorkerContext | None:
    """Make ``context`` the one jobs use; returns the one it replaces."""
    global _current
    previous, _current = _current, context
    return previous


def current() -> WorkerContext:
    """The installed context; a plain `rq worker` process builds one from the environment."""
    global _current
    if _current is None:
        _current = build_context(Settings.from_env())
    return _current
