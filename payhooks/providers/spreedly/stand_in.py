"""A local stand-in for Spreedly's transaction API (``GET /v1/transactions/{token}.json``
and the list, ``GET /v1/transactions.json``), for tests and dev.

Answers as Spreedly's API reference shows: HTTP Basic (environment key, access secret; 401
otherwise), 404 for an unknown token, ``{"transaction": {...}}`` with ``amount`` in minor
units. The list answers ``{"transactions": [...]}``, 20 a page, ordered by ``created_at``
then token, oldest first (``order=desc``: newest first), the page after ``since_token``'s
record (developer.spreedly.com/reference/order-and-pagination). ``overlap`` (0 unless a
test sets it) starts each later page that many records early, as a list fetched from a
token short of a page's last repeats records; ``list_faults`` and ``lookup_faults`` make
the list or the lookup answer 429 or 5xx. Control: ``POST /_sandbox/spreedly/transactions`` adds one (``invoice``, ``amount``
in major units, optional ``currency`` (EUR), ``transaction_type`` (Purchase), ``state``
(succeeded), ``token``, ``reference_token``, ``on_test_gateway``); answers the record.
"""

from __future__ import annotations

import base64
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from aiohttp import web

from payhooks.domain.money import to_minor_units
from payhooks.providers.kit.transactions import TransactionBook

API_PATH = "/spreedly"
ENVIRONMENT_KEY = "payhooksDevEnvironmentKey01"
ACCESS_SECRET = "payhooks-dev-only-spreedly-access-secret"  # noqa: S105


PAGE_SIZE = 20


@dataclass
class SpreedlyState(TransactionBook):
    """Spreedly's transactions by token, as its API answers them."""

    #: Records each later page of the list repeats from the one before (see above).
    overlap: int = 0
    #: Statuses the list answers next, in order (200: as usual; 429 without Retry-After).
    list_faults: list[int] = field(default_factory=list)
    #: Each call to the list, as ``GET path?query``.
    requests: list[str] = field(default_factory=list)
    #: Statuses the per-transaction lookup answers next, as ``list_faults`` the list's.
    lookup_faults: list[int] = field(default_factory=list)


SPREEDLY_STATE = web.AppKey("spreedly_state", SpreedlyState)


def new_token() -> str:
    return secrets.token_urlsafe(20).replace("-", "a").replace("_", "b")[:27]


def transaction_record(
    token: str,
    *,
    invoice: str,
    amount: str,
    currency: str = "EUR",
    transaction_type: str = "Purchase",
    state: str = "succeeded",
    reference_token: str | None = None,
    on_test_gateway: bool = False,
    created_at: datetime | None = None,
) -> dict[str, Any]:
    """A transaction as ``GET /v1/transactions/{token}.json`` returns it."""
    now = (created_at or datetime.now(tz=UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "token": token,
        "transaction_type": transaction_type,
        "state": state,
        "succeeded": state == "succeeded",
        "amount": to_minor_units(Decimal(amount), currency),
        "currency_code": currency,
        "order_id": invoice,
        "on_test_gateway": on_test_gateway,
        "created_at": now,
        "updated_at": now,
        "reference_token": reference_token,
        "gateway_type": "test" if on_test_gateway else "stripe",
        "message": "Succeeded!" if state == "succeeded" else state,
        "payment_method": {"payment_method_type": "credit_card", "last_four_digits": "1111"},
    }


def _refused(request: web.Request) -> web.Response | None:
    expected = base64.b64encode(f"{ENVIRONMENT_KEY}:{ACCESS_SECRET}".encode()).decode()
    if request.headers.get("Authorization") == f"Basic {expected}":
        return None
    return web.json_response(
        {"errors": [{"key": "errors.unauthorized", "message": "Unable to authenticate"}]},
        status=401,
    )


def _fault(faults: list[int]) -> web.Response | None:
    """The next status of ``faults`` as Spreedly would answer it; None for 200 (or none)."""
    status = faults.pop(0) if faults else 200
    if status == 429:
        return web.json_response(
            {"errors": [{"key": "errors.too_many_requests", "message": "Too many requests"}]},
            status=429,
        )
    if status != 200:
        return web.json_response({"errors": [{"key": "errors.internal"}]}, status=status)
    return None


async def list_transactions(request: web.Request) -> web.Response:
    state = request.app[SPREEDLY_STATE]
    state.requests.append(f"GET {request.path_qs}")
    fault = _fault(state.list_faults)
    if fault is not None:
        return fault
    refused = _refused(request)
    if refused is not None:
        return refused
    ordered = sorted(state.transactions.values(), key=lambda t: (t["created_at"], t["token"]))
    if request.query.get("order") == "desc":
        ordered.reverse()
    start = 0
    since = request.query.get("since_token")
    if since:
        tokens = [t["token"] for t in ordered]
        start = tokens.index(since) + 1 - state.overlap if since in tokens else len(ordered)
    return web.json_response({"transactions": ordered[max(0, start) : max(0, start) + PAGE_SIZE]})


async def transaction(request: web.Request) -> web.Response:
    state = request.app[SPREEDLY_STATE]
    state.lookups += 1
    fault = _fault(state.lookup_faults)
    if fault is not None:
        return fault
    refused = _refused(request)
    if refused is not None:
        return refused
    record = state.transactions.get(request.match_info["token"])
    if record is None:
        return web.json_response(
            {"errors": [{"key": "errors.transaction_not_found", "message": "Not found"}]},
            status=404,
        )
    return web.json_response({"transaction": record})


async def add_transaction(request: web.Request) -> web.Response:
    body = await request.json()
    record = transaction_record(
        str(body.get("token") or new_token()),
        invoice=str(body["invoice"]),
        amount=str(body["amount"]),
        currency=str(body.get("currency", "EUR")),
        transaction_type=str(body.get("transaction_type", "Purchase")),
        state=str(body.get("state", "succeeded")),
        reference_token=body.get("reference_token"),
        on_test_gateway=bool(body.get("on_test_gateway", False)),
    )
    request.app[SPREEDLY_STATE].transactions[record["token"]] = record
    return web.json_response(record)


def add_spreedly_routes(app: web.Application, state: SpreedlyState | None = None) -> None:
    app[SPREEDLY_STATE] = state or SpreedlyState()
    app.router.add_get(API_PATH + "/v1/transactions.json", list_transactions)
    app.router.add_get(API_PATH + "/v1/transactions/{token}.json", transaction)
    app.router.add_post("/_sandbox/spreedly/transactions", add_transaction)
