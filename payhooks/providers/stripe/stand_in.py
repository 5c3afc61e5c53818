"""A local stand-in for the Stripe API reads the worker makes, for tests and `payhooks dev`.

``GET /v1/payment_intents/{id}`` (``expand[]=latest_charge``), ``GET /v1/charges/{id}``,
``GET /v1/invoices/{id}``, ``GET /v1/invoice_payments?invoice=…&status=…`` and
``GET /v1/events`` (``created[gte|lte]``, ``types[]``, ``delivery_success``,
``starting_after``, ``limit``; newest first, as reconciliation reads it), answered
in Stripe's shapes (lists as ``{"object": "list", "data": …}``) and error format, with
the secret key required as a bearer token, as the official SDK sends it. Point
``STRIPE_API_BASE`` at the server's root. Objects are put straight into ``StripeState``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

API_KEY = "sk_test_payhooks_sandbox"  # the stand-in's fixed test key


@dataclass
class StripeState:
    api_key: str = API_KEY
    payment_intents: dict[str, dict[str, Any]] = field(default_factory=dict)
    charges: dict[str, dict[str, Any]] = field(default_factory=dict)
    invoices: dict[str, dict[str, Any]] = field(default_factory=dict)
    invoice_payments: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: Events as ``GET /v1/events`` lists them (in the order they were created).
    events: list[dict[str, Any]] = field(default_factory=list)
    #: Ids of events whose webhook was not delivered (``delivery_success=false``).
    undelivered: set[str] = field(default_factory=set)
    #: Statuses ``GET /v1/events`` answers next, in order (200: as usual; 429 with ``Retry-After: 0``).
    event_faults: list[int] = field(default_factory=list)
    #: Requests answered, as "METHOD path", in order.
    requests: list[str] = field(default_factory=list)


STRIPE_STATE = web.AppKey("stripe_state", StripeState)


def _error(status: int, error_type: str, message: str, code: str | None = None) -> web.Response:
    error: dict[str, Any] = {"type": error_type, "message": message}
    if code:
        error["code"] = code
    return web.json_response({"error": error}, status=status)


def _authorised(request: web.Request) -> bool:
    return request.headers.get("Authorization") == f"Bearer {request.app[STRIPE_STATE].api_key}"


def _retrieve(collection: str) -> Any:
    async def handle(request: web.Request) -> web.Response:
        state = request.app[STRIPE_STATE]
        state.requests.append(f"GET {request.path}")
        if not _authorised(request):
            return _error(401, "invalid_request_error", "Invalid API Key provided")
        found = getattr(state, collection).get(request.match_info["id"])
        if found is None:
            return _error(
                404,
                "invalid_request_error",
                f"No such object: '{request.match_info['id']}'",
                "resource_missing",
            )
        found = dict(found)
        if "latest_charge" in request.query.getall("expand[0]", []):
            charge = state.charges.get(str(found.get("latest_charge")))
            if charge is not None:
                found["latest_charge"] = charge
        return web.json_response(found)

    return handle


async def list_invoice_payments(request: web.Request) -> web.Response:
    state = request.app[STRIPE_STATE]
    state.requests.append(f"GET {request.path_qs}")
    if not _authorised(request):
        return _error(401, "invalid_request_error", "Invalid API Key provided")
    invoice = request.query.get("invoice")
    status = request.query.get("status")
    data = [
        payment
        for payment in state.invoice_payments.values()
        if (invoice is None or payment.get("invoice") == invoice)
        and (status is None or payment.get("status") == status)
    ]
    return web.json_response(
        {"object": "list", "data": data, "has_more": False, "url": "/v1/invoice_payments"}
    )


async def list_events(request: web.Request) -> web.Response:
    state = request.app[STRIPE_STATE]
    state.requests.append(f"GET {request.path_qs}")
    if not _authorised(request):
        return _error(401, "invalid_request_error", "Invalid API Key provided")
    status = state.event_faults.pop(0) if state.event_faults else 200
    if status != 200:
        if status == 429:
            response = _error(429, "invalid_request_error", "Too many requests", "rate_limit")
            response.headers["Retry-After"] = "0"
            return response
        return _error(status, "api_error", "Something went wrong on Stripe's end.")
    query = request.query
    types = {value for name, value in query.items() if name.startswith("types[")}
    gte = int(query.get("created[gte]", "0"))
    lte = int(query.get("created[lte]", str(2**62)))
    undelivered_only = query.get("delivery_success") == "false"
    listed = [
        event
        for event in reversed(state.events)  # newest first
        if gte <= int(event["created"]) <= lte
        and (not types or event["type"] in types)
        and (not undelivered_only or event["id"] in state.undelivered)
    ]
    listed.sort(key=lambda event: -int(event["created"]))  # stable: ties newest first
    after = query.get("starting_after")
    if after is not None:
        ids = [event["id"] for event in listed]
        if after not in ids:
            return _error(
                400, "invalid_request_error", f"No such event: '{after}'", "resource_missing"
            )
        listed = listed[ids.index(after) + 1 :]
    limit = min(int(query.get("limit", "10")), 100)
    return web.json_response(
        {
            "object": "list",
            "data": listed[:limit],
            "has_more": len(listed) > limit,
            "url": "/v1/events",
        }
    )


def add_stripe_routes(app: web.Application, state: StripeState | None = None) -> StripeState:
    state = state or StripeState()
    app[STRIPE_STATE] = state
    app.router.add_get("/v1/payment_intents/{id}", _retrieve("payment_intents"))
    app.router.add_get("/v1/charges/{id}", _retrieve("charges"))
    app.router.add_get("/v1/invoices/{id}", _retrieve("invoices"))
    app.router.add_get("/v1/invoice_payments", list_invoice_payments)
    app.router.add_get("/v1/events", list_events)
    return state
