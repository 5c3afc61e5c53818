"""A local stand-in for Forte's REST API v3 transaction lookup, for tests and dev.

Answers like the real API as public clients describe it: HTTP Basic with the API access
id and secure key plus ``X-Forte-Auth-Organization-Id`` (400 when missing, 401 when
wrong), the organization in the path, 404 for an unknown transaction, and transactions
shaped like Forte's (``response.response_code`` ``A01`` when approved).
Control: ``POST /_sandbox/forte/transactions`` adds a transaction.
"""

from __future__ import annotations

import base64
from datetime import datetime, timedelta, timezone
from typing import Any

from aiohttp import web

from payhooks.providers.kit.transactions import TransactionBook

ORGANIZATION_ID = "org_333251"  # as in Forte's published webhook sample
LOCATION_ID = "loc_191620"
API_ACCESS_ID = "sandbox_forte_access_id"
API_SECURE_KEY = "sandbox_forte_secure_key"
API_PATH = "/forte/v3"


#: Forte's published sample is dated in US Mountain standard time; its stand-in too.
FORTE_TIME = timezone(timedelta(hours=-7))


def forte_now() -> str:
    """Now, written as Forte writes ``received_date`` (7 fractional digits, an offset)."""
    now = datetime.now(tz=FORTE_TIME)
    return now.strftime("%Y-%m-%dT%H:%M:%S.%f") + "0" + now.strftime("%z")[:3] + ":00"


class ForteState(TransactionBook):
    """Forte's transactions, as its API answers them."""


FORTE_STATE = web.AppKey("forte_state", ForteState)


def transaction_record(
    transaction_id: str,
    *,
    order_number: str,
    amount: str,
    status: str = "ready",
    echeck: bool = False,
    location_id: str = LOCATION_ID,
    received_date: str | None = None,
) -> dict[str, Any]:
    """A sale as Forte's API returns it (fields as in Forte's webhook sample, article
    1000102770, and the v3 transaction object)."""
    approved = status not in ("declined", "failed")
    record: dict[str, Any] = {
        "transaction_id": transaction_id,
        "organization_id": ORGANIZATION_ID,
        "location_id": location_id,
        "order_number": order_number,
        "reference_id": "reference ID",
        "status": status,
        "action": "sale",
        "authorization_amount": float(amount),
        "authorization_code": "7EZ442" if approved else "",
        "entered_by": "2976300bb69f08b2dfe5",
        "received_date": received_date or forte_now(),
        "response": {
            "environment": "sandbox",
            "response_type": "A" if approved else "D",
            "response_code": "A01" if approved else "U02",
            "response_desc": "TEST APPROVAL" if approved else "ACCOUNT NOT APPROVED",
        },
    }
    if echeck:
        record["echeck"] = {"account_type": "checking", "masked_account_number": "****6789"}
    else:
        record["card"] = {"card_type": "visa", "masked_account_number": "****1111"}
    return record


def _error(status: int, text: str) -> web.Response:
    return web.json_response(
        {"response": {"environment": "sandbox", "response_desc": text}}, status=status
    )


async def transaction(request: web.Request) -> web.Response:
    state = request.app[FORTE_STATE]
    state.lookups += 1
    organization = request.headers.get("X-Forte-Auth-Organization-Id")
    authorization = request.headers.get("Authorization", "")
    if not organization or not authorization.startswith("Basic "):
        return _error(400, "Authentication information is missing in the header.")
    expected = base64.b64encode(f"{API_ACCESS_ID}:{API_SECURE_KEY}".encode()).decode()
    if authorization != f"Basic {expected}" or organization != ORGANIZATION_ID:
        return _error(401, "The access id and secure key combination not found.")
    if request.match_info["organization"] != ORGANIZATION_ID:
        return _error(401, "The organization is not the authenticating organization.")
    record = state.transactions.get(request.match_info["transaction"])
    if record is None or record["location_id"] != request.match_info["location"]:
        return _error(404, "The transaction was not found.")
    return web.json_response(record)


async def add_transaction(request: web.Request) -> web.Response:
    body = await request.json()
    record = transaction_record(
        str(body["id"]),
        order_number=str(body["order_number"]),
        amount=str(body["amount"]),
        status=str(body.get("status", "ready")),
        echeck=bool(body.get("echeck", False)),
    )
    request.app[FORTE_STATE].transactions[record["transaction_id"]] = record
    return web.json_response(record)


def add_forte_routes(app: web.Application, state: ForteState | None = None) -> None:
    app[FORTE_STATE] = state or ForteState()
    app.router.add_get(
        API_PATH + "/organizations/{organization}/locations/{location}/transactions/{transaction}",
        transaction,
    )
    app.router.add_post("/_sandbox/forte/transactions", add_transaction)
