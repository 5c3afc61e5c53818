"""A local stand-in for GoCardless's ``GET /payments/{id}``, ``GET /refunds/{id}`` and
``GET /events`` (``created_at[gte|lte]``, ``resource_type``, ``after``, ``limit``; newest
first, with ``meta.cursors``), as reconciliation reads it.

For tests and `payhooks dev`.
Answers in GoCardless's envelope (``{"payments": {...}}``) and error format, requires
the bearer token and the ``GoCardless-Version`` header as the real API does. Served from
the root of its server, because the SDK joins absolute paths onto its base URL.
Control: ``POST /_sandbox/gocardless/payments`` adds a payment,
``POST /_sandbox/gocardless/refunds`` a refund of one,
``POST /_sandbox/gocardless/events`` an event of one (``{"id", "payment", "action"}``,
created now: a payment whose webhook never came, for `payhooks reconcile`);
``POST /_sandbox/gocardless/faults`` fails the next lookups.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

ACCESS_TOKEN = "sandbox_gocardless_token"  # noqa: S105 (the stand-in's fixed test token)


@dataclass
class GoCardlessState:
    access_token: str = ACCESS_TOKEN
    payments: dict[str, dict[str, Any]] = field(default_factory=dict)
    refunds: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: HTTP statuses to answer to the next lookups, in order.
    faults: list[int] = field(default_factory=list)
    #: Events as ``GET /events`` lists them (in the order they were created).
    events: list[dict[str, Any]] = field(default_factory=list)
    #: HTTP statuses ``GET /events`` answers next, in order (200: as usual).
    event_faults: list[int] = field(default_factory=list)
    #: The query of every ``GET /events``, in order.
    event_requests: list[dict[str, str]] = field(default_factory=list)
    lookups: int = 0


GC_STATE = web.AppKey("gocardless_state", GoCardlessState)


def _now() -> str:
    """Now, as GoCardless writes its times (milliseconds, Z)."""
    return datetime.now(tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def payment_record(
    payment_id: str,
    *,
    amount_minor: int,
    currency: str = "GBP",
    invoice_id: int | None = None,
    reference: str | None = None,
    mandate: str | None = None,
    status: str = "confirmed",
) -> dict[str, Any]:
    return {
        "id": payment_id,
        "amount": amount_minor,
        "amount_refunded": 0,
        "currency": currency.upper(),
        "charge_date": datetime.now(tz=UTC).strftime("%Y-%m-%d"),
        "created_at": _now(),
        "description": "Coworking membership",
        "metadata": {} if invoice_id is None else {"nexudus_invoice_id": str(invoice_id)},
        "reference": reference,
        "scheme": "bacs",
        "status": status,
        "links": {
            "creditor": "CR000TEST",
            "mandate": mandate or "MD" + secrets.token_hex(6).upper(),
        },
    }


def refund_record(
    refund_id: str, *, payment_id: str, amount_minor: int, currency: str = "GBP"
) -> dict[str, Any]:
    """A Refund as GoCardless's API returns it (amount positive, in minor units)."""
    return {
        "id": refund_id,
        "amount": amount_minor,
        "currency": currency.upper(),
        "created_at": _now(),
        "reference": "Refund",
        "metadata": {},
        "status": "created",
        "links": {"payment": payment_id},
    }


def _error(status: int, error_type: str, message: str, reason: str) -> web.Response:
    return web.json_response(
        {
            "error": {
                "type": error_type,
                "code": status,
                "message": message,
                "documentation_url": "https://developer.gocardless.com/api-reference#" + reason,
                "request_id": secrets.token_hex(8),
                "errors": [{"reason": reason, "message": message}],
            }
        },
        status=status,
    )


async def get_payment(request: web.Request) -> web.Response:
    return await _get(request, "payments")


async def get_refund(request: web.Request) -> web.Response:
    return await _get(request, "refunds")


async def _get(request: web.Request, resource: str) -> web.Response:
    state = request.app[GC_STATE]
    state.lookups += 1
    if request.headers.get("Authorization") != f"Bearer {state.access_token}":
        return _error(401, "invalid_api_usage", "Access token not found", "access_token_not_found")
    if not request.headers.get("GoCardless-Version"):
        return _error(400, "invalid_api_usage", "Version header missing", "missing_version_header")
    if state.faults:
        status = state.faults.pop(0)
        if status == 429:
            return _error(429, "invalid_api_usage", "Rate limit exceeded", "rate_limit_exceeded")
        return _error(status, "gocardless", "Internal server error", "internal_server_error")
    found = getattr(state, resource).get(request.match_info["id"])
    if found is None:
        return _error(404, "invalid_api_usage", "Resource not found", "resource_not_found")
    return web.json_response({resource: found})


async def list_events(request: web.Request) -> web.Response:
    state = request.app[GC_STATE]
    state.event_requests.append(dict(request.query))
    if request.headers.get("Authorization") != f"Bearer {state.access_token}":
        return _error(401, "invalid_api_usage", "Access token not found", "access_token_not_found")
    status = state.event_faults.pop(0) if state.event_faults else 200
    if status != 200:
        if status == 429:
            return _error(429, "invalid_api_usage", "Rate limit exceeded", "rate_limit_exceeded")
        return _error(status, "gocardless", "Internal server error", "internal_server_error")
    query = request.query
    gte = query.get("created_at[gte]", "")
    lte = query.get("created_at[lte]", "9999")
    resource = query.get("resource_type")
    listed = [
        event
        for event in reversed(state.events)  # newest first
        if gte <= event["created_at"] <= lte  # one format (ms, Z): text order is time order
        and (resource is None or event["resource_type"] == resource)
    ]
    after = query.get("after")
    if after is not None:
        ids = [event["id"] for event in listed]
        listed = listed[ids.index(after) + 1 :] if after in ids else []
    limit = min(int(query.get("limit", "50")), 500)
    page = listed[:limit]
    more = len(listed) > limit
    return web.json_response(
        {
            "events": page,
            "meta": {
                "cursors": {"after": page[-1]["id"] if more else None, "before": after},
                "limit": limit,
            },
        }
    )


async def add_payment(request: web.Request) -> web.Response:
    body = await request.json()
    record = payment_record(
        body["id"],
        amount_minor=int(body["amount"]),
        currency=body.get("currency", "GBP"),
        invoice_id=body.get("invoice_id"),
        reference=body.get("reference"),
        mandate=body.get("mandate"),
    )
    request.app[GC_STATE].payments[record["id"]] = record
    return web.json_response({"payments": record})


async def add_refund(request: web.Request) -> web.Response:
    body = await request.json()
    record = refund_record(
        body["id"],
        payment_id=body["payment"],
        amount_minor=int(body["amount"]),
        currency=body.get("currency", "GBP"),
    )
    request.app[GC_STATE].refunds[record["id"]] = record
    return web.json_response({"refunds": record})


async def add_event(request: web.Request) -> web.Response:
    body = await request.json()
    event = {
        "id": body["id"],
        "created_at": _now(),
        "resource_type": "payments",
        "action": body.get("action", "confirmed"),
        "details": {"origin": "gocardless", "cause": "payment_" + body.get("action", "confirmed")},
        "metadata": {},
        "links": {"payment": body["payment"]},
    }
    request.app[GC_STATE].events.append(event)
    return web.json_response({"events": event})


async def add_faults(request: web.Request) -> web.Response:
    request.app[GC_STATE].faults.extend(int(s) for s in (await request.json())["statuses"])
    return web.json_response({"ok": True})


def add_gocardless_routes(app: web.Application, state: GoCardlessState | None = None) -> None:
    app[GC_STATE] = state or GoCardlessState()
    app.router.add_get("/payments/{id}", get_payment)
    app.router.add_get("/refunds/{id}", get_refund)
    app.router.add_get("/events", list_events)
    app.router.add_post("/_sandbox/gocardless/payments", add_payment)
    app.router.add_post("/_sandbox/gocardless/refunds", add_refund)
    app.router.add_post("/_sandbox/gocardless/events", add_event)
    app.router.add_post("/_sandbox/gocardless/faults", add_faults)
