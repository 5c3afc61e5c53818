"""Queueing webhooks as the receiver does (or keeping them unprocessed), finding their jobs,
and reading the Nexudus sandbox's call log."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from redis import Redis
from rq.job import Job, JobStatus

from payhooks.cli.ops import RUN_STAGES, Ops
from payhooks.devtools.samples.deliver import deliver_bodies
from payhooks.devtools.sandbox.nexudus import SandboxState
from payhooks.settings import Settings
from payhooks.storage import redis_connect, redis_keys
from payhooks.storage.trail import StoredWebhook, Trail
from service.inbox import Accepted
from service.quarantine import Quarantine

#: What a test delivers: the raw body, a sample's ``signed(...)`` pair (body, headers), or a
#: JSON object (a Stripe event, a GoCardless batch) sent as ``json.dumps`` writes it.
Webhook = bytes | tuple[bytes, Mapping[str, str]] | dict[str, Any]


def deliver(settings: Settings, provider: str, *webhooks: Webhook) -> list[Accepted]:
    """Queue ``webhooks`` for ``provider`` (a registry name, or ``generic/<source>``) exactly
    as the receiver does once it has verified them, one after another; what each was."""
    accepted: list[Accepted] = []
    for webhook in webhooks:
        headers: dict[str, str] = {}
        if isinstance(webhook, dict):
            body = json.dumps(webhook).encode()
        elif isinstance(webhook, bytes):
            body = webhook
        else:
            body, headers = webhook[0], dict(webhook[1])
        accepted += deliver_bodies(settings, provider, [body], headers)
    return accepted


async def keep_unprocessed(settings: Settings, provider: str, body: bytes) -> StoredWebhook:
    """Keep ``body`` as a receiver whose code could not read it does: listed as unprocessed."""
    redis = redis_connect.async_client(settings)
    webhook = StoredWebhook.of(provider, body, {}, None)
    await Quarantine(redis, ttl_seconds=60).keep(webhook, "OverflowError in service/x.py:1")
    await redis.aclose()
    return webhook


def api_calls(state: SandboxState) -> list[tuple[str, str, int]]:
    return [(c.method, c.path, c.status) for c in state.calls]


def writes(state: SandboxState, method: str | None = None) -> list[tuple[str, str, int]]:
    return [
        (c.method, c.path, c.status)
        for c in state.calls
        if c.write and c.status == 200 and (method is None or c.method == method)
    ]


def queued_job(redis: Redis, event_key: str) -> Job:
    """The RQ job the receiver queued for ``event_key`` (``<provider>:<event id>``)."""
    return Job.fetch(redis_keys.job_id(event_key), connection=redis)


def outcome_of(redis: Redis, event_key: str) -> str:
    """How the last run of ``event_key``'s job ended, as its trail says ("" if none ran):
    a finished job is not kept, its outcome is in the trail."""
    stages = [str(e.get("stage")) for e in Trail(redis, ttl_seconds=60).history(event_key)]
    return next((stage for stage in reversed(stages) if stage in RUN_STAGES), "")


def replay_event(settings: Settings, redis: Redis, event_key: str) -> str:
    """What `payhooks replay-event` does: the event re-normalised from its kept body, its
    job queued again (how a finished event is run again: its job is not kept)."""
    return Ops(settings, redis).replay_event(event_key)


def finished(redis: Redis, event_key: str) -> str:
    """The outcome of ``event_key``'s job if it finished (RQ then lets it expire in a
    second); else why not."""
    if redis.exists(Job.key_for(redis_keys.job_id(event_key))):
        status = queued_job(redis, event_key).get_status()
        if status != JobStatus.FINISHED:
            return f"not finished: {status}"
    return outcome_of(redis, event_key)
