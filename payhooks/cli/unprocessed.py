"""Verified input the code could not normalise: list, show, replay, dismiss.

The receiver keeps such a webhook as it keeps every verified one (``payhooks:webhook:…``),
and a reconcile scan such a record of a provider's list (``payhooks:polled:…``, its hash
saying ``read_by`` list); both are listed in ``payhooks:unprocessed`` with the reason (see
payhooks/storage/unprocessed.py). Once the code is fixed, a replay runs the current
normaliser (the receiver's, or the provider's lister's) over the stored body and queues what
comes out, through the same idempotent job as ``replay-event``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from payhooks.cli.ops import Ops
from payhooks.domain.events import Ignored, Normalised
from payhooks.providers.kit.listing import Lister
from payhooks.providers.kit.unreadable import reason_of
from payhooks.providers.listers import build_listers
from payhooks.providers.receivers import build_providers
from payhooks.storage import redis_keys, trail
from payhooks.storage.redis_keys import text
from payhooks.storage.unprocessed import READ_BY_LIST
from workers.reconcile import follow_replayed

_PREFIXES = (redis_keys.webhook(""), redis_keys.polled(""))
#: How many leading hex digits of the body's SHA-256 name a webhook in listings.
SHORT_ID = 16


@dataclass(frozen=True, slots=True)
class UnprocessedWebhook:
    id: str
    provider: str
    received_at: str
    reason: str
    redacted: bool
    #: Where it came from: "webhook", or "list" (a reconcile scan read it from the
    #: provider's list).
    source: str = "webhook"

    @property
    def key(self) -> str:
        if self.source == READ_BY_LIST:
            return redis_keys.polled(self.id)
        return redis_keys.webhook(self.id)


class UnprocessedWebhooks:
    def __init__(self, ops: Ops) -> None:
        self._ops = ops
        self._redis = ops.redis

    def listed(self) -> list[UnprocessedWebhook]:
        """Oldest first. Entries whose webhook has expired are dropped from the index."""
        found_keys = self._redis.zrange(trail.UNPROCESSED, 0, -1)
        members = [text(m) for m in found_keys if isinstance(m, bytes | str)]
        found: list[UnprocessedWebhook] = []
        with self._redis.pipeline(transaction=False) as pipe:
            for key in members:
                pipe.hmget(key, "provider", "received_at", "unprocessed", "redacted", "read_by")
            rows: list[list[Any]] = pipe.execute()
        gone = []
        for key, (provider, received_at, reason, redacted, read_by) in zip(
            members, rows, strict=True
        ):
            if provider is None or reason is None:
                gone.append(key)  # expired, or replayed meanwhile
                continue
            found.append(
                UnprocessedWebhook(
                    id=key.rpartition(":")[2],
                    provider=text(provider),
                    received_at=text(received_at or b""),
                    reason=text(reason),
                    redacted=text(redacted or b"0") == "1",
                    source=text(read_by or b"webhook"),
                )
            )
        if gone:
            self._redis.zrem(trail.UNPROCESSED, *gone)
        return found

    def find(self, reference: str) -> UnprocessedWebhook:
        """By its id or an unambiguous prefix of it (at least 8 hex digits)."""
        reference = reference.strip().lower()
        for prefix in _PREFIXES:
            reference = reference.removeprefix(prefix)
        if len(reference) < 8:
            raise ValueError(f"give at least 8 characters of the id, got {reference!r}")
        matches = [w for w in self.listed() if w.id.startswith(reference)]
        if not matches:
            raise LookupError(
                f"no unprocessed webhook {reference} (kept "
                f"{self._ops.settings.event_retention_days} days; `payhooks unprocessed list` "
                "shows those there are)"
            )
        if len(matches) > 1:
            raise ValueError(f"{reference} names {len(matches)} webhooks; give more of the id")
        return matches[0]

    def stored(self, webhook: UnprocessedWebhook) -> dict[str, Any]:
        stored = self._ops.trail.webhook(webhook.key)
        if stored is None:
            raise LookupError(f"webhook {webhook.id} has expired")
        return stored

    def replay(self, webhook: UnprocessedWebhook) -> tuple[bool, list[str]]:
        """Normalise the stored body with the current code and queue its events.
        (True, what happened to each event), or (False, why it still cannot)."""
        stored = self.stored(webhook)
        normalise = self._normaliser(webhook)
        try:
            normalised = normalise(stored["body"], stored["headers"])
        except Exception as exc:  # noqa: BLE001 (the reason is what the operator needs)
            reason = reason_of(exc)
            self._redis.hset(webhook.key, "unprocessed", reason)
            return False, [f"{webhook.id[:SHORT_ID]}: still cannot be normalised: {reason}"]
        # Told as it came: a webhook "received", a listed record "polled" (its origin).
        listed = webhook.source == READ_BY_LIST
        stage = "polled" if listed else "received"
        origin: dict[str, Any] = {"origin" if listed else "webhook": webhook.key}
        lines = []
        for item in normalised:
            event_key = f"{webhook.provider}:{item.event_id}"
            if isinstance(item, Ignored):
                self._ops.trail.append(event_key, stage, event_type=item.event_type, **origin)
                self._ops.trail.append(event_key, "ignored", reason=item.reason)
                lines.append(f"{event_key}: ignored ({item.reason})")
                continue
            self._ops.trail.append(
                event_key,
                stage,
                invoice_id=item.invoice.invoice_id,
                event_type=item.event_type,
                source="unprocessed",
                **origin,
            )
            # The queueing half of `replay-event`: the same idempotent job, its own id.
            lines.append(self._ops._enqueue(item))
        if listed:
            lines += self._follow(webhook, stored["body"])
        self._resolve(webhook)
        return True, lines or [f"{webhook.id[:SHORT_ID]}: holds no events"]

    def _normaliser(self, webhook: UnprocessedWebhook) -> Callable[[bytes, Any], list[Normalised]]:
        """The current code's reader of what was kept: the provider's lister for a listed
        record, its receiver for a webhook."""
        if webhook.source == READ_BY_LIST:
            lister = self._lister(webhook)
            return lambda body, headers: lister.normalise(body)
        providers = build_providers(self._ops.settings)
        if webhook.provider not in providers:
            raise ValueError(
                f"provider {webhook.provider} is not configured here; run with the receiver's "
                "environment (its secrets build the normaliser)"
            )
        return providers[webhook.provider].normalise

    def _lister(self, webhook: UnprocessedWebhook) -> Lister:
        listers, skipped = build_listers(self._ops.settings, [webhook.provider])
        if webhook.provider not in listers:
            raise ValueError(
                f"provider {webhook.provider} cannot be listed here "
                f"({skipped.get(webhook.provider, 'not configured')}); run with the "
                "workers' environment (its API credentials build the lister)"
            )
        return listers[webhook.provider]

    def _follow(self, webhook: UnprocessedWebhook, body: bytes) -> list[str]:
        """A listed record still open (a pending purchase, a refund not settled) is watched
        as the scan that could not read it would have watched it: later scans read it
        back until it is final."""
        settings = self._ops.settings
        still_open, given_up = follow_replayed(
            self._lister(webhook),
            body,
            self._redis,
            ttl_seconds=settings.event_ttl_seconds,
            pending_days=settings.reconcile_pending_days,
        )
        if given_up:
            return [f"{webhook.id[:SHORT_ID]}: still open and too old to follow: look it up"]
        if still_open:
            return [f"{webhook.id[:SHORT_ID]}: still open: reconcile scans read it back"]
        return []

    def dismiss(self, webhook: UnprocessedWebhook) -> None:
        """Take it off the list (handled by hand); the body stays until it expires."""
        self._resolve(webhook)

    def _resolve(self, webhook: UnprocessedWebhook) -> None:
        with self._redis.pipeline(transaction=True) as pipe:
            pipe.zrem(trail.UNPROCESSED, webhook.key)
            pipe.hdel(webhook.key, "unprocessed")
            pipe.execute()
