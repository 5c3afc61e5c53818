"""A local stand-in for ePay's ``gettransaction`` web service (SOAP), for tests and dev.

Control: ``POST /_sandbox/epay/transactions`` adds a transaction
``{txnid, orderid, amount (minor units), currency (numeric), status}`` (status
``PAYMENT_NEW``, authorised, unless given; ``PAYMENT_CAPTURED`` is captured in full).
"""

from __future__ import annotations

from typing import Any
from xml.etree import ElementTree

from aiohttp import web

from payhooks.providers.kit.transactions import TransactionBook

API_PATH = "/remote/payment.asmx"
MERCHANT_NUMBER = "8888888"


class EPayState(TransactionBook):
    """Transactions by ``txnid``, as ``gettransaction``'s transactionInformation."""


EPAY_STATE = web.AppKey("epay_state", EPayState)


def _answer(found: bool, info: dict[str, Any]) -> web.Response:
    fields = "".join(f"<{k}>{v}</{k}>" for k, v in info.items())
    body = f"""<?xml version="1.0" encoding="utf-8"?>
<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body>
<gettransactionResponse xmlns="https://ssl.ditonlinebetalingssystem.dk/remote/payment">
<gettransactionResult>{"true" if found else "false"}</gettransactionResult>
<transactionInformation>{fields}</transactionInformation>
<epayresponse>{-1 if found else -1002}</epayresponse>
</gettransactionResponse></soap:Body></soap:Envelope>"""
    return web.Response(body=body.encode(), content_type="text/xml")


async def gettransaction(request: web.Request) -> web.Response:
    state = request.app[EPAY_STATE]
    state.lookups += 1
    root = ElementTree.fromstring(await request.read())  # noqa: S314
    values = {e.tag.rsplit("}", 1)[-1]: (e.text or "") for e in root.iter()}
    if values.get("merchantnumber") != MERCHANT_NUMBER:
        return _answer(False, {})
    transaction = state.transactions.get(values.get("transactionid", ""))
    return _answer(transaction is not None, transaction or {})


async def add_transaction(request: web.Request) -> web.Response:
    body = await request.json()
    status = body.get("status", "PAYMENT_NEW")  # authorised; PAYMENT_CAPTURED once captured
    request.app[EPAY_STATE].transactions[str(body["txnid"])] = {
        "transactionid": body["txnid"],
        "orderid": body["orderid"],
        "authamount": body["amount"],
        "currency": body["currency"],
        "status": status,
        "capturedamount": body["amount"] if status == "PAYMENT_CAPTURED" else "0",
        "creditedamount": "0",
    }
    return web.json_response({"ok": True})


def add_epay_routes(app: web.Application, state: EPayState | None = None) -> None:
    app[EPAY_STATE] = state or EPayState()
    app.router.add_post(API_PATH, gettransaction)
    app.router.add_post("/_sandbox/epay/transactions", add_transaction)
