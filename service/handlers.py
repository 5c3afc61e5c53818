"""POST /webhooks/{provider}: read raw bytes, verify, normalise, queue, acknowledge."""

from __future__ import annotations

import hmac
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import orjson
from aiohttp import web

from payhooks.domain.events import Ignored, PaymentEvent
from payhooks.logs import info_line
from payhooks.providers.kit.receiver_errors import (
    BodyTooLarge,
    InvalidPayload,
    InvalidSignature,
    QueueUnavailable,
    SignedButUnreadable,
    UnknownUrlToken,
    UnsupportedMediaType,
    WebhookError,
)
from payhooks.providers.kit.receiving import WebhookProvider
from payhooks.providers.kit.unreadable import reason_of
from payhooks.storage import redis_keys
from payhooks.storage.trail import StoredWebhook
from service import metrics
from service.inbox import Accepted, EventInbox
from service.intake import PendingBodies, ReadLimits, read_body
from service.quarantine import Quarantine

log = logging.getLogger("payhooks.webhook")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def webhook_handler(
    provider: WebhookProvider,
    inbox: EventInbox,
    quarantine: Quarantine,
    limits: ReadLimits,
    budget: PendingBodies,
) -> Handler:
    name = provider.name
    unprocessed = metrics.WEBHOOKS.labels(name, "unprocessed")
    ack_seconds = metrics.ACK_SECONDS.labels(name)
    # Label lookups cost more than the increments: resolve the hot ones once.
    event_outcomes = {
        outcome: metrics.EVENTS.labels(name, outcome)
        for outcome in (*(a.value for a in Accepted), "ignored")
    }
    webhook_outcomes = {
        outcome: metrics.WEBHOOKS.labels(name, outcome)
        for outcome in ("accepted", "duplicate", "ignored")
    }

    async def handle(request: web.Request) -> web.StreamResponse:
        started = time.perf_counter()
        try:
            _check_url_token(provider, request)
            response = await _handle(request)
        except web.HTTPRequestEntityTooLarge:
            return _reject(name, BodyTooLarge("body over 1 MiB"))
        except InvalidSignature as exc:
            # Refused with the status the provider documents for it (GoCardless: 498).
            refused = InvalidSignature(exc.message, status=provider.bad_signature_status)
            return _reject(name, refused)
        except WebhookError as exc:
            return _reject(name, exc)
        ack_seconds.observe(time.perf_counter() - started)
        return response

    async def _handle(request: web.Request) -> web.StreamResponse:
        body = await _read(provider, request, limits, budget)
        if provider.prepare is not None:  # I/O a check needs first (PayPal's certificate)
            await provider.prepare(request.headers)
        try:
            _verify(provider, body, request.headers)
        except SignedButUnreadable as exc:
            return await _unprocessed(stored_webhook(provider, body, request.headers), exc)
        webhook = stored_webhook(provider, body, request.headers)
        try:
            normalised = provider.normalise(body, request.headers)
            events = [item for item in normalised if isinstance(item, PaymentEvent)]
            ignored = [item for item in normalised if isinstance(item, Ignored)]
            results = await inbox.accept(webhook, events, ignored)
        except (InvalidPayload, QueueUnavailable):
            raise  # the sender reads the schema's complaints; Redis down: it retries
        except Exception as exc:  # noqa: BLE001 (verified: kept and acknowledged, never a 500)
            return await _unprocessed(webhook, exc)
        queued, duplicates = _note_outcomes(name, events, results, ignored, event_outcomes)
        outcome = "accepted" if queued else "duplicate" if duplicates else "ignored"
        webhook_outcomes[outcome].inc()
        if not events and provider.nothing_to_do_status == 204:
            return web.Response(status=204)
        return _json(
            {"status": outcome, "queued": queued, "duplicates": duplicates, "ignored": len(ignored)}
        )

    async def _unprocessed(webhook: StoredWebhook, exc: Exception) -> web.Response:
        reason = reason_of(exc)
        await quarantine.keep(webhook, reason)
        unprocessed.inc()
        log.error(
            "webhook.unprocessed",
            extra={"provider": name, "webhook": webhook.key, "reason": reason},
        )
        return web.json_response({"status": "unprocessed", "queued": 0, "duplicates": 0})

    return handle


async def _read(
    provider: WebhookProvider, request: web.Request, limits: ReadLimits, budget: PendingBodies
) -> bytes:
    if request.method == "GET":
        # As received (still percent-encoded): the hash covers values in their order.
        return request.rel_url.raw_query_string.encode()
    if request.content_type not in provider.content_types:
        raise UnsupportedMediaType(
            f"expected {', '.join(sorted(provider.content_types))}, got {request.content_type}"
        )
    return await read_body(request, limits, budget)


def _check_url_token(provider: WebhookProvider, request: web.Request) -> None:
    """For a provider that signs nothing: the URL must end with one of our tokens (its
    routes take every method, so only past the token is a wrong method told apart)."""
    tokens = provider.url_tokens
    if not tokens:
        return
    # Bytes: compare_digest refuses non-ASCII text, and a path may hold any. Every token is
    # compared, so the time taken says nothing about which one came close.
    given_bytes = request.match_info.get("token", "").encode()
    matches = [hmac.compare_digest(given_bytes, token.encode()) for token in tokens]
    if not any(matches):
        raise UnknownUrlToken("no such webhook URL")
    if request.method != provider.method:
        raise web.HTTPMethodNotAllowed(request.method, [provider.method])


def _verify(provider: WebhookProvider, body: bytes, headers: Mapping[str, str]) -> None:
    try:
        provider.verify(body, headers)
    except WebhookError:
        raise
    except Exception as exc:  # noqa: BLE001 (a parser's failure on input we cannot trust)
        raise InvalidSignature(f"could not be verified ({reason_of(exc)})") from None


def stored_webhook(
    provider: WebhookProvider, body: bytes, headers: Mapping[str, str]
) -> StoredWebhook:
    """The request as the trail keeps it. A body too broken to redact is kept as received
    (Redis holds secrets anyway); losing it would lose the payment."""
    try:
        redacted = provider.redact(body)
    except Exception:  # noqa: BLE001
        redacted = None
    kept = {h: headers[h] for h in provider.signature_headers if h in headers}
    return StoredWebhook.of(provider.name, body, kept, redacted)


def _json(answer: dict[str, object]) -> web.Response:
    """What ``web.json_response`` answers, with orjson (it runs on every webhook)."""
    return web.Response(body=orjson.dumps(answer), content_type="application/json", charset="utf-8")


def _reject(name: str, exc: WebhookError) -> web.Response:
    """Every refusal is a short JSON reason; none echoes the body or a secret."""
    metrics.WEBHOOKS.labels(name, exc.code).inc()
    log.warning("webhook.rejected", extra={"provider": name, "reason": exc.message})
    if isinstance(exc, UnknownUrlToken):
        # What aiohttp answers for a URL that does not exist, word for word (its body is
        # left unread there too, and aiohttp deals with it the same way).
        return web.Response(status=404, text="404: Not Found")
    answer: dict[str, object] = {"error": exc.code, "reason": exc.message}
    if isinstance(exc, InvalidPayload):
        answer["errors"] = exc.errors
    response = web.json_response(answer, status=exc.status)
    if exc.close_connection:
        response.force_close()
    return response


_MESSAGES = {accepted: f"webhook.{accepted.value}" for accepted in Accepted}


def _note_outcomes(
    name: str,
    events: list[PaymentEvent],
    results: list[Accepted],
    ignored: list[Ignored],
    counters: dict[str, Any],
) -> tuple[int, int]:
    """Count and log each event's outcome: one line per event. (queued, duplicates)."""
    queued = duplicates = 0
    for event, result in zip(events, results, strict=True):
        if result is Accepted.QUEUED:
            queued += 1
        else:
            duplicates += 1
        counters[result].inc()  # a StrEnum: finds its value's key
        info_line(
            log,
            _MESSAGES[result],
            {
                "provider": name,
                "event_id": event.event_id,
                "event_type": event.event_type,
                "job_id": redis_keys.job_id(event.key),
                "kind": event.kind.value,
                "invoice": event.invoice.describe(),
            },
        )
    for item in ignored:
        counters["ignored"].inc()
        info_line(
            log,
            "webhook.ignored",
            {
                "provider": name,
                "event_id": item.event_id,
                "event_type": item.event_type,
                "reason": item.reason,
            },
        )
    return queued, duplicates
