"""A local stand-in for Authorize.Net's Transaction Details API (JSON), for tests and dev:
getTransactionDetails, getUnsettledTransactionList, getSettledBatchList and
getTransactionList.

Answers like the real API: a byte-order mark before the JSON, ``messages.resultCode``,
``E00040`` for an unknown transaction, ``E00007`` for wrong credentials, lists shaped as
the API reference's examples (tests/fixtures/authorizenet_*.json), paged by
``paging.limit`` (at most 1000) and ``paging.offset`` (a page number from 1), a settled
batch list of at most 31 days. Control: ``POST /_sandbox/authorizenet/transactions`` adds
a transaction (unsettled), ``POST /_sandbox/authorizenet/batches`` settles some in a batch.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web

from payhooks.providers.kit.transactions import TransactionBook

LOGIN_ID = "sandbox_login"
TRANSACTION_KEY = "sandbox_transaction_key"


@dataclass
class AuthorizeNetState(TransactionBook):
    """Transactions by ``transId``, as getTransactionDetails answers them (a settled one
    names its ``batch``), and the batches by id, in the order they settled."""

    batches: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: What the next list calls answer: 200 as usual, another HTTP status (429, 503), or
    #: an error code (E00001).
    faults: list[int | str] = field(default_factory=list)
    #: Each list call, as "<request name> <batchId or ''> <offset>".
    requests: list[str] = field(default_factory=list)


ANET_STATE = web.AppKey("authorizenet_state", AuthorizeNetState)


def transaction_record(
    transaction_id: str,
    *,
    invoice_number: str,
    amount: str,
    status: str = "capturedPendingSettlement",
    subscription_id: str | None = None,
    refunds: str | None = None,
    submitted: datetime | None = None,
) -> dict[str, Any]:
    """A transaction as getTransactionDetails gives it; ``refunds`` makes it a refund of
    that transaction (``refTransId``), as Authorize.Net records one."""
    record: dict[str, Any] = {
        "transId": transaction_id,
        "submitTimeUTC": _time(submitted or datetime.now(tz=UTC)),
        "transactionType": "refundTransaction" if refunds else "authCaptureTransaction",
        "transactionStatus": status,
        "responseCode": 1,
        "authAmount": float(amount),
        "settleAmount": float(amount),
        "order": {"invoiceNumber": invoice_number, "description": "Coworking membership"},
        "payment": {"creditCard": {"cardNumber": "XXXX1111", "cardType": "Visa"}},
    }
    if refunds:
        record["refTransId"] = refunds
    if subscription_id:
        record["subscription"] = {"id": subscription_id, "payNum": 1}
    return record


def _answer(body: dict[str, Any]) -> web.Response:
    return web.Response(
        body=b"\xef\xbb\xbf" + json.dumps(body).encode(), content_type="application/json"
    )


def _error(code: str, text: str) -> web.Response:
    return _answer({"messages": {"resultCode": "Error", "message": [{"code": code, "text": text}]}})


def _time(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _ok(body: dict[str, Any]) -> web.Response:
    ok = {"resultCode": "Ok", "message": [{"code": "I00001", "text": "Successful."}]}
    return _answer({**body, "messages": ok})


async def api(request: web.Request) -> web.Response:
    state = request.app[ANET_STATE]
    [(name, call)] = list((await request.json()).items())[:1] or [("", {})]
    auth = call.get("merchantAuthentication") or {}
    if auth.get("name") != LOGIN_ID or auth.get("transactionKey") != TRANSACTION_KEY:
        return _error("E00007", "User authentication failed due to invalid authentication values.")
    if name == "getTransactionDetailsRequest":
        state.lookups += 1
        transaction = state.transactions.get(str(call.get("transId")))
        if transaction is None:
            return _error("E00040", "The record cannot be found.")
        return _ok({"transaction": transaction})
    lists = {
        "getUnsettledTransactionListRequest": _unsettled,
        "getSettledBatchListRequest": _batch_list,
        "getTransactionListRequest": _batch_transactions,
    }
    if name not in lists:
        return _error("E00003", f"The stand-in does not serve {name!r}.")
    state.requests.append(
        f"{name} {call.get('batchId', '')} {(call.get('paging') or {}).get('offset', '')}".strip()
    )
    fault = state.faults.pop(0) if state.faults else 200
    if isinstance(fault, str):
        return _error(fault, "An error occurred during processing. Please try again.")
    if fault != 200:
        return web.Response(status=fault)
    return lists[name](state, call)


def _listed(transaction: dict[str, Any]) -> dict[str, Any]:
    """A transaction as the lists give it (the API reference's example fields)."""
    card = (transaction.get("payment") or {}).get("creditCard") or {}
    item = {
        "transId": transaction["transId"],
        "submitTimeUTC": transaction["submitTimeUTC"],
        "submitTimeLocal": transaction["submitTimeUTC"].rstrip("Z"),
        "transactionStatus": transaction["transactionStatus"],
        "invoiceNumber": (transaction.get("order") or {}).get("invoiceNumber"),
        "firstName": "Ellen",
        "lastName": "Johnson",
        "accountType": card.get("cardType", "Visa"),
        "accountNumber": card.get("cardNumber", "XXXX1111"),
        "settleAmount": transaction["settleAmount"],
        "marketType": "eCommerce",
        "product": "Card Not Present",
        # A payment an eCheck return or chargeback went back on is flagged here
        # (transactionSummaryType.hasReturnedItems); the return is a transaction of its own.
        "hasReturnedItemsSpecified": bool(transaction.get("returnedItems")),
    }
    if transaction.get("returnedItems"):
        item["hasReturnedItems"] = True
    if transaction.get("subscription"):
        item["subscription"] = transaction["subscription"]
    return item


def _page(transactions: list[dict[str, Any]], call: dict[str, Any]) -> web.Response:
    paging = call.get("paging") or {}
    limit, offset = int(paging.get("limit", 1000)), int(paging.get("offset", 1))
    if not 1 <= limit <= 1000 or offset < 1:
        return _error("E00013", "Paging limit must be 1 to 1000 and offset at least 1.")
    sorting = call.get("sorting") or {}
    descending = str(sorting.get("orderDescending", "false")).lower() == "true"
    ordered = sorted(transactions, key=lambda t: (t["submitTimeUTC"], t["transId"]))
    if descending:
        ordered.reverse()
    page = ordered[(offset - 1) * limit : offset * limit]
    body: dict[str, Any] = {"totalNumInResultSet": len(ordered)}
    if page:
        body["transactions"] = [_listed(t) for t in page]
    return _ok(body)


def _unsettled(state: AuthorizeNetState, call: dict[str, Any]) -> web.Response:
    return _page([t for t in state.transactions.values() if "batch" not in t], call)


def _batch_transactions(state: AuthorizeNetState, call: dict[str, Any]) -> web.Response:
    batch = str(call.get("batchId", ""))
    if batch not in state.batches:
        return _error("E00040", "The record cannot be found.")
    listed = [
        t for t in state.transactions.values() if (t.get("batch") or {}).get("batchId") == batch
    ]
    return _page(listed, call)


def _batch_list(state: AuthorizeNetState, call: dict[str, Any]) -> web.Response:
    try:
        first = datetime.fromisoformat(call["firstSettlementDate"]).replace(tzinfo=UTC)
        last = datetime.fromisoformat(call["lastSettlementDate"]).replace(tzinfo=UTC)
    except (KeyError, ValueError):
        return _error("E00013", "firstSettlementDate and lastSettlementDate are required.")
    if not timedelta(0) <= last - first <= timedelta(days=31):
        return _error("E00013", "The date range cannot exceed 31 days.")
    batches = [
        {
            "batchId": batch_id,
            "settlementTimeUTC": batch["settlementTimeUTC"],
            "settlementTimeLocal": batch["settlementTimeUTC"].rstrip("Z"),
            "settlementState": "settledSuccessfully",
            "paymentMethod": "creditCard",
            "marketType": "eCommerce",
            "product": "Card Not Present",
        }
        for batch_id, batch in state.batches.items()
        if first <= datetime.fromisoformat(batch["settlementTimeUTC"]) <= last
    ]
    return _ok({"batchList": batches} if batches else {})


def settle(
    state: AuthorizeNetState, batch_id: str, transaction_ids: list[str], at: datetime | None = None
) -> None:
    """Settle ``transaction_ids`` in batch ``batch_id``, as Authorize.Net's nightly batch
    does: a capture becomes settledSuccessfully, a refund refundSettledSuccessfully."""
    settled_at = _time(at or datetime.now(tz=UTC))
    state.batches[batch_id] = {"settlementTimeUTC": settled_at}
    for transaction_id in transaction_ids:
        transaction = state.transactions[transaction_id]
        transaction["batch"] = {
            "batchId": batch_id,
            "settlementTimeUTC": settled_at,
            "settlementState": "settledSuccessfully",
        }
        transaction["transactionStatus"] = {
            "capturedPendingSettlement": "settledSuccessfully",
            "refundPendingSettlement": "refundSettledSuccessfully",
        }.get(transaction["transactionStatus"], transaction["transactionStatus"])


def return_item(
    state: AuthorizeNetState,
    payment_id: str,
    return_id: str,
    *,
    status: str = "returnedItem",
    code: str = "R03",
    description: str = "No account/unable to locate account",
) -> None:
    """The bank returns payment ``payment_id`` (or charges it back), as Authorize.Net's
    published material shows it: the payment keeps its status and names the return in
    ``returnedItems`` (getTransactionDetails; the lists say ``hasReturnedItems``), and the
    return is a transaction of its own, ``return_id``, in ``status`` (returnedItem,
    chargeback, chargebackReversal), here settled in a batch of its own (where the real
    lists give it, Authorize.Net does not say)."""
    payment = state.transactions[payment_id]
    at = _time(datetime.now(tz=UTC))
    payment.setdefault("returnedItems", []).append(
        {
            "id": return_id,
            "dateUTC": at,
            "dateLocal": at.rstrip("Z"),
            "code": code,
            "description": description,
        }
    )
    invoice = (payment.get("order") or {}).get("invoiceNumber") or ""
    state.transactions[return_id] = transaction_record(
        return_id, invoice_number=invoice, amount=str(payment["settleAmount"]), status=status
    )
    settle(state, f"B{return_id}", [return_id])


async def add_transaction(request: web.Request) -> web.Response:
    body = await request.json()
    record = transaction_record(
        str(body["id"]),
        invoice_number=str(body["invoice_number"]),
        amount=str(body["amount"]),
        status=body.get("status", "capturedPendingSettlement"),
        subscription_id=body.get("subscription_id"),
        refunds=body.get("refunds"),
    )
    request.app[ANET_STATE].transactions[record["transId"]] = record
    return web.json_response(record)


async def add_batch(request: web.Request) -> web.Response:
    body = await request.json()
    settle(request.app[ANET_STATE], str(body["id"]), [str(t) for t in body["transactions"]])
    return web.json_response({"id": str(body["id"])})


def add_authorizenet_routes(app: web.Application, state: AuthorizeNetState | None = None) -> None:
    app[ANET_STATE] = state or AuthorizeNetState()
    app.router.add_post("/xml/v1/request.api", api)
    app.router.add_post("/_sandbox/authorizenet/transactions", add_transaction)
    app.router.add_post("/_sandbox/authorizenet/batches", add_batch)
