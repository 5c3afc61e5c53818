"""A local stand-in for Spreedly's transaction API (``GET /v1/transactions/{token}.json``),
for tests and dev.

Answers as Spreedly's API reference shows: HTTP Basic (environment key, access secret; 401
otherwise), 404 for an unknown token, ``{"transaction": {...}}`` with ``amount`` in minor
units. Control: ``POST /_sandbox/spreedly/transactions`` adds one (``invoice``, ``amount``
in major units, optional ``currency`` (EUR), ``transaction_type`` (Purchase), ``state``
(succeeded), ``token``, ``reference_token``, ``on_test_gateway``); answers the record.
"""

from __future__ import annotations

import base64
import secrets
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from aiohttp import web

from payhooks.domain.money import to_minor_units
from payhooks.providers.kit.transactions import TransactionBook

API_PATH = "/spreedly"
ENVIRONMENT_KEY = "payhooksDevEnvironmentKey01"
ACCESS_SECRET = "payhooks-dev-only-spreedly-access-secret"  # noqa: S105


class SpreedlyState(TransactionBook):
    """Spreedly's transactions by token, as its API answers them."""


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
) -> dict[str, Any]:
    """A transaction as ``GET /v1/transactions/{token}.json`` returns it."""
    now = datetime.now(tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
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


async def transaction(request: web.Request) -> web.Response:
    state = request.app[SPREEDLY_STATE]
    state.lookups += 1
    expected = base64.b64encode(f"{ENVIRONMENT_KEY}:{ACCESS_SECRET}".encode()).decode()
    if request.headers.get("Authorization") != f"Basic {expected}":
        return web.json_response(
            {"errors": [{"key": "errors.unauthorized", "message": "Unable to authenticate"}]},
            status=401,
        )
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
    app.router.add_get(API_PATH + "/v1/transactions/{token}.json", transaction)
    app.router.add_post("/_sandbox/spreedly/transactions", add_transaction)
