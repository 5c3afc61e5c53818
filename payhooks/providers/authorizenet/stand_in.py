"""A local stand-in for Authorize.Net's getTransactionDetails (JSON API), for tests and dev.

Answers like the real API: a byte-order mark before the JSON, ``messages.resultCode``,
``E00040`` for an unknown transaction, ``E00007`` for wrong credentials.
Control: ``POST /_sandbox/authorizenet/transactions`` adds a transaction.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from payhooks.providers.kit.transactions import TransactionBook

LOGIN_ID = "sandbox_login"
TRANSACTION_KEY = "sandbox_transaction_key"


class AuthorizeNetState(TransactionBook):
    """Transactions by ``transId``, as getTransactionDetails answers them."""


ANET_STATE = web.AppKey("authorizenet_state", AuthorizeNetState)


def transaction_record(
    transaction_id: str,
    *,
    invoice_number: str,
    amount: str,
    status: str = "capturedPendingSettlement",
    subscription_id: str | None = None,
    refunds: str | None = None,
) -> dict[str, Any]:
    """A transaction as getTransactionDetails gives it; ``refunds`` makes it a refund of
    that transaction (``refTransId``), as Authorize.Net records one."""
    record: dict[str, Any] = {
        "transId": transaction_id,
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


async def api(request: web.Request) -> web.Response:
    state = request.app[ANET_STATE]
    state.lookups += 1
    details = (await request.json()).get("getTransactionDetailsRequest") or {}
    auth = details.get("merchantAuthentication") or {}
    if auth.get("name") != LOGIN_ID or auth.get("transactionKey") != TRANSACTION_KEY:
        return _error("E00007", "User authentication failed due to invalid authentication values.")
    transaction = state.transactions.get(str(details.get("transId")))
    if transaction is None:
        return _error("E00040", "The record cannot be found.")
    return _answer(
        {
            "transaction": transaction,
            "messages": {
                "resultCode": "Ok",
                "message": [{"code": "I00001", "text": "Successful."}],
            },
        }
    )


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


def add_authorizenet_routes(app: web.Application, state: AuthorizeNetState | None = None) -> None:
    app[ANET_STATE] = state or AuthorizeNetState()
    app.router.add_post("/xml/v1/request.api", api)
    app.router.add_post("/_sandbox/authorizenet/transactions", add_transaction)
