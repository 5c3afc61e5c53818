"""Workers: the type of the ``run_worker`` fixture, and those outside it: the `payhooks`
command line, its environment, a burst worker."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable

from redis import Redis
from rq import Queue, SimpleWorker

from payhooks.providers.stripe.sample import DEV_WEBHOOK_SECRET as STRIPE_SECRET
from payhooks.settings import Settings

#: The type of the ``run_worker`` fixture (tests/conftest.py): drain the queue with a real
#: RQ worker in burst mode, built from the fixture's settings.
RunWorker = Callable[[], None]


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


#: The command line as a user runs it.
PAYHOOKS = [sys.executable, "-m", "payhooks.cli"]


def worker_env(settings: Settings, **extra: str) -> dict[str, str]:
    """The environment of a `payhooks worker` process for these settings (limits off)."""
    return {
        "PATH": os.environ.get("PATH", ""),
        "REDIS_URL": settings.require_redis(),
        "NEXUDUS_BASE_URL": settings.nexudus_base_url,
        "NEXUDUS_USERNAME": settings.nexudus_username or "",
        "NEXUDUS_PASSWORD": settings.nexudus_password or "",
        "NEXUDUS_WRITES_PER_MINUTE": "10000",
        "NEXUDUS_CALLS_PER_MINUTE": "10000",
        "NEXUDUS_MIN_INTERVAL_MS": "0",
        "JOB_RETRY_BASE_SECONDS": "0",
        "STRIPE_WEBHOOK_SECRETS": STRIPE_SECRET,
        **extra,
    }
