"""A local stand-in for Forte's REST API v3 transaction lookup and lists, for tests and dev.

Answers like the real API as public clients describe it: HTTP Basic with the API access
id and secure key plus ``X-Forte-Auth-Organization-Id`` (400 when missing, 401 when
wrong), the organization in the path, 404 for an unknown transaction, and transactions
shaped like Forte's (``response.response_code`` ``A01`` when approved). The lists, as
reconciliation reads them: ``GET …/locations/{loc}/transactions`` and ``…/settlements``
with a ``filter`` of ``name eq 'value'`` terms joined by ``and``
(``start_received_date``/``end_received_date``, dates, both included; for settlements
``start_settle_date``/``end_settle_date``, and ``settle_type`` if given), ``page_size`` (at most
1000) and ``page_index`` (from 0), newest first, answered as
``{"number_results", "search_criteria", "results"}``.
Control: ``POST /_sandbox/forte/transactions`` adds a transaction.
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass, field
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


@dataclass
class ForteState(TransactionBook):
    """Forte's transactions, as its API answers them, and its settlements."""

    settlements: list[dict[str, Any]] = field(default_factory=list)
    #: The query of every list request, in order.
    list_requests: list[dict[str, str]] = field(default_factory=list)
    #: HTTP statuses the lists answer next, in order (429 with ``Retry-After: 0``).
    list_faults: list[int] = field(default_factory=list)


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


def _refused(request: web.Request) -> web.Response | None:
    organization = request.headers.get("X-Forte-Auth-Organization-Id")
    authorization = request.headers.get("Authorization", "")
    if not organization or not authorization.startswith("Basic "):
        return _error(400, "Authentication information is missing in the header.")
    expected = base64.b64encode(f"{API_ACCESS_ID}:{API_SECURE_KEY}".encode()).decode()
    if authorization != f"Basic {expected}" or organization != ORGANIZATION_ID:
        return _error(401, "The access id and secure key combination not found.")
    if request.match_info["organization"] != ORGANIZATION_ID:
        return _error(401, "The organization is not the authenticating organization.")
    return None


async def transaction(request: web.Request) -> web.Response:
    state = request.app[FORTE_STATE]
    state.lookups += 1
    refused = _refused(request)
    if refused is not None:
        return refused
    record = state.transactions.get(request.match_info["transaction"])
    if record is None or record["location_id"] != request.match_info["location"]:
        return _error(404, "The transaction was not found.")
    return web.json_response(record)


def settlement_record(
    transaction: dict[str, Any],
    *,
    settle_type: str = "reject",
    settle_date: str | None = None,
    response_code: str = "R01",
) -> dict[str, Any]:
    """A settlement of ``transaction``, as developers.forte.net "Settlements" lists its
    fields; ``reject`` is an ACH return (R01: insufficient funds)."""
    return {
        "settle_id": f"stl_{transaction['transaction_id'].removeprefix('trn_')}",
        "organization_id": transaction["organization_id"],
        "location_id": transaction["location_id"],
        "transaction_id": transaction["transaction_id"],
        "order_number": transaction["order_number"],
        "reference_id": transaction.get("reference_id", ""),
        "settle_date": settle_date or forte_now(),
        "settle_type": settle_type,
        "settle_response_code": response_code,
        "settle_amount": transaction["authorization_amount"],
        "method": "echeck",
    }


#: A filter's terms, as Forte's clients write them: ``name eq 'value'`` joined by ``and``.
FILTER_TERM = re.compile(r"\s*(\w+)\s+eq\s+'?([^' ]*)'?\s*", re.IGNORECASE)


def _filter(text: str) -> dict[str, str] | None:
    terms = {}
    for part in re.split(r"\s+and\s+", text.strip(), flags=re.IGNORECASE) if text.strip() else []:
        found = FILTER_TERM.fullmatch(part)
        if found is None:
            return None
        terms[found[1].lower()] = found[2]
    return terms


def _listing(date_field: str, allowed: frozenset[str]) -> Any:
    async def handle(request: web.Request) -> web.Response:
        state = request.app[FORTE_STATE]
        state.list_requests.append({"path": request.path, **request.query})
        refused = _refused(request)
        if refused is not None:
            return refused
        if state.list_faults:
            response = _error(state.list_faults.pop(0), "Too many requests.")
            response.headers["Retry-After"] = "0"
            return response
        terms = _filter(request.query.get("filter", ""))
        if terms is None or not set(terms) <= allowed:
            return _error(400, "The filter is not valid.")
        try:
            size = int(request.query.get("page_size", "50"))
            index = int(request.query.get("page_index", "0"))
        except ValueError:
            return _error(400, "page_size and page_index take whole numbers.")
        if not 1 <= size <= 1000 or index < 0:
            return _error(400, "page_size is 1 to 1000, page_index from 0.")
        prefix = date_field.removesuffix("_date")
        since = terms.pop(f"start_{date_field}", "")
        until = terms.pop(f"end_{date_field}", "9999-12-31")
        location = request.match_info["location"]
        source = state.transactions.values() if prefix == "received" else state.settlements
        found = [
            record
            for record in source
            if record["location_id"] == location
            and since <= str(record[date_field])[:10] <= until
            and all(str(record.get(name)) == value for name, value in terms.items())
        ]
        found.sort(key=lambda record: str(record[date_field]), reverse=True)  # newest first
        return web.json_response(
            {
                "number_results": len(found),
                "search_criteria": {
                    "filter": request.query.get("filter", ""),
                    "page_size": size,
                    "page_index": index,
                },
                "results": found[index * size : (index + 1) * size],
            }
        )

    return handle


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
    locations = API_PATH + "/organizations/{organization}/locations/{location}"
    app.router.add_get(
        locations + "/transactions",
        _listing("received_date", frozenset({"start_received_date", "end_received_date"})),
    )
    app.router.add_get(
        locations + "/settlements",
        _listing("settle_date", frozenset({"start_settle_date", "end_settle_date", "settle_type"})),
    )
    app.router.add_post("/_sandbox/forte/transactions", add_transaction)
