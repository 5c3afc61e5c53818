"""Verified webhooks the receiver could not normalise: list, show, replay, dismiss.

The receiver keeps such a webhook as it keeps every verified one (``payhooks:webhook:…``)
and lists it in ``payhooks:unprocessed`` with the reason (see service/quarantine.py).
Once the code is fixed, a replay runs the current normaliser over the stored body and
queues what comes out, through the same idempotent job as ``replay-event``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from payhooks.cli.ops import Ops
from payhooks.domain.events import Ignored
from payhooks.providers.receivers import build_providers
from payhooks.storage import redis_keys, trail
from payhooks.storage.redis_keys import text
from service.quarantine import reason_of

_PREFIX = redis_keys.webhook("")
#: How many leading hex digits of the body's SHA-256 name a webhook in listings.
SHORT_ID = 16


@dataclass(frozen=True, slots=True)
class UnprocessedWebhook:
    id: str
    provider: str
    received_at: str
    reason: str
    redacted: bool

    @property
    def key(self) -> str:
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
                pipe.hmget(key, "provider", "received_at", "unprocessed", "redacted")
            rows: list[list[Any]] = pipe.execute()
        gone = []
        for key, (provider, received_at, reason, redacted) in zip(members, rows, strict=True):
            if provider is None or reason is None:
                gone.append(key)  # expired, or replayed meanwhile
                continue
            found.append(
                UnprocessedWebhook(
                    id=key.removeprefix(_PREFIX),
                    provider=text(provider),
                    received_at=text(received_at or b""),
                    reason=text(reason),
                    redacted=text(redacted or b"0") == "1",
                )
            )
        if gone:
            self._redis.zrem(trail.UNPROCESSED, *gone)
        return found

    def find(self, reference: str) -> UnprocessedWebhook:
        """By its id or an unambiguous prefix of it (at least 8 hex digits)."""
        reference = reference.strip().removeprefix(_PREFIX).lower()
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
        providers = build_providers(self._ops.settings)
        if webhook.provider not in providers:
            raise ValueError(
                f"provider {webhook.provider} is not configured here; run with the receiver's "
                "environment (its secrets build the normaliser)"
            )
        try:
            normalised = providers[webhook.provider].normalise(stored["body"], stored["headers"])
        except Exception as exc:  # noqa: BLE001 (the reason is what the operator needs)
            reason = reason_of(exc)
            self._redis.hset(webhook.key, "unprocessed", reason)
            return False, [f"{webhook.id[:SHORT_ID]}: still cannot be normalised: {reason}"]
        lines = []
        for item in normalised:
            event_key = f"{webhook.provider}:{item.event_id}"
            if isinstance(item, Ignored):
                self._ops.trail.append(
                    event_key, "received", event_type=item.event_type, webhook=webhook.key
                )
                self._ops.trail.append(event_key, "ignored", reason=item.reason)
                lines.append(f"{event_key}: ignored ({item.reason})")
                continue
            self._ops.trail.append(
                event_key,
                "received",
                invoice_id=item.invoice.invoice_id,
                event_type=item.event_type,
                webhook=webhook.key,
                source="unprocessed",
            )
            # The queueing half of `replay-event`: the same idempotent job, its own id.
            lines.append(self._ops._enqueue(item))
        self._resolve(webhook)
        return True, lines or [f"{webhook.id[:SHORT_ID]}: holds no events"]

    def dismiss(self, webhook: UnprocessedWebhook) -> None:
        """Take it off the list (handled by hand); the body stays until it expires."""
        self._resolve(webhook)

    def _resolve(self, webhook: UnprocessedWebhook) -> None:
        with self._redis.pipeline(transaction=True) as pipe:
            pipe.zrem(trail.UNPROCESSED, webhook.key)
            pipe.hdel(webhook.key, "unprocessed")
            pipe.execute()
