"""A local stand-in for GoCardless's ``GET /payments/{id}`` and ``GET /refunds/{id}``.

For tests and `payhooks dev`.
Answers in GoCardless's envelope (``{"payments": {...}}``) and error format, requires
the bearer token and the ``GoCardless-Version`` header as the real API does. Served from
the root of its server, because the SDK joins absolute paths onto its base URL.
Control: ``POST /_sandbox/gocardless/payments`` adds a payment,
``POST /_sandbox/gocardless/refunds`` a refund of one;
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


async def add_faults(request: web.Request) -> web.Response:
    request.app[GC_STATE].faults.extend(int(s) for s in (await request.json())["statuses"])
    return web.json_response({"ok": True})


def add_gocardless_routes(app: web.Application, state: GoCardlessState | None = None) -> None:
    app[GC_STATE] = state or GoCardlessState()
    app.router.add_get("/payments/{id}", get_payment)
    app.router.add_get("/refunds/{id}", get_refund)
    app.router.add_post("/_sandbox/gocardless/payments", add_payment)
    app.router.add_post("/_sandbox/gocardless/refunds", add_refund)
    app.router.add_post("/_sandbox/gocardless/faults", add_faults)
