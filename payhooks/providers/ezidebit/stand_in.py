"""A local stand-in for Ezidebit's non-PCI SOAP service (``GetPayments``), for tests and dev.

Answers as Ezidebit's published examples show: ``GetPaymentsResponse/GetPaymentsResult``
with ``Data`` (a ``Payment`` per row, every field, nil where empty), ``Error`` 0 and a nil
``ErrorMessage``; a call without its SOAPAction is a SOAP fault (``s:Client``), a wrong
Digital Key a non-zero ``Error``. It filters by ``DateField`` (SETTLEMENT or PAYMENT) over
``DateFrom``..``DateTo`` and by ``PaymentType``.
Control: ``POST /_sandbox/ezidebit/payments`` adds a payment (``invoice``, ``amount``,
optional ``status`` (S), ``payment_id``, ``reason``); answers the row.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from datetime import date
from typing import Any
from xml.sax.saxutils import escape

from aiohttp import web

from payhooks.providers.ezidebit.formats import (
    NAMESPACE,
    PAYMENT_FIELDS,
    SOAP_ACTION,
    SOAP_ENVELOPE,
    EziDebitAnswerError,
    Row,
    parse_xml,
)
from payhooks.providers.ezidebit.poller import ezidebit_now

API_PATH = "/ezidebit/v3-5/nonpci"
# Not a secret: the stand-in's Digital Key, shaped like Ezidebit's (36 characters).
DIGITAL_KEY = "00000000-0000-0000-0000-5ad0b0c5d3e5"
#: Ezidebit's message for a key it does not know is not published; the stand-in's own.
WRONG_KEY_ERROR = "1"

_TYPES = {"ALL": None, "SUCCESSFUL": ("S",), "FAILED": ("D", "F"), "PENDING": ("W", "P")}
_NUMBERS = itertools.count(48992)  # after the PaymentIDs of Ezidebit's published example


@dataclass
class EziDebitState:
    payments: list[Row] = field(default_factory=list)
    #: Each GetPayments call's (DateFrom, DateTo, DateField), in order.
    requests: list[tuple[str, str, str]] = field(default_factory=list)
    #: Answer the next calls with this instead (an ``Error`` code, or "fault").
    scripted: list[str] = field(default_factory=list)


EZIDEBIT_STATE = web.AppKey("ezidebit_state", EziDebitState)


def payment_row(
    invoice: str,
    amount: str,
    *,
    status: str = "S",
    payment_id: str | None = None,
    reason: str = "",
    settled: str | None = None,
) -> Row:
    """A row as GetPayments returns it (Ezidebit's published example's fields)."""
    now = ezidebit_now().replace(microsecond=0, tzinfo=None).isoformat()
    return {
        "BankFailedReason": reason,
        "BankReceiptID": "430357" if status == "S" else "",
        "BankReturnCode": "0" if status == "S" else "6",
        "CustomerName": "Test",
        "DebitDate": now,
        "EzidebitCustomerID": "1911838",
        "InvoiceID": "0",
        "PaymentAmount": amount,
        "PaymentID": payment_id or f"WEB{next(_NUMBERS)}",
        "PaymentMethod": "DR",
        "PaymentReference": invoice,
        "PaymentSource": "WEB",
        "PaymentStatus": status,
        "ScheduledAmount": amount.lstrip("-"),
        "SettlementDate": None if status in ("W", "P") else (settled or now),
        "TransactionFeeClient": "0.99",
        "TransactionFeeCustomer": "0",
        "TransactionTime": now,
        "YourGeneralReference": "",
        "YourSystemReference": "",
    }


def _field(name: str, value: str | None) -> str:
    if value is None:
        return f'<{name} i:nil="true"/>'
    return f"<{name}>{escape(value)}</{name}>" if value else f"<{name}/>"


def get_payments_answer(rows: list[Row], error: str = "0", message: str | None = None) -> bytes:
    payments = "".join(
        "<Payment>" + "".join(_field(n, row.get(n)) for n in PAYMENT_FIELDS) + "</Payment>"
        for row in rows
    )
    return (
        f'<s:Envelope xmlns:s="{SOAP_ENVELOPE}"><s:Body>'
        f'<GetPaymentsResponse xmlns="{NAMESPACE}">'
        '<GetPaymentsResult xmlns:i="http://www.w3.org/2001/XMLSchema-instance">'
        f"<Data>{payments}</Data><Error>{error}</Error>{_field('ErrorMessage', message)}"
        "</GetPaymentsResult></GetPaymentsResponse></s:Body></s:Envelope>"
    ).encode()


def soap_fault_answer(code: str, text: str) -> web.Response:
    body = (
        f'<s:Envelope xmlns:s="{SOAP_ENVELOPE}"><s:Body><s:Fault>'
        f"<faultcode>{code}</faultcode><faultstring>{escape(text)}</faultstring>"
        "</s:Fault></s:Body></s:Envelope>"
    )
    return web.Response(status=500, body=body.encode(), content_type="text/xml")


def _in_window(row: Row, field_name: str, start: str, end: str) -> bool:
    value = row.get(field_name)
    if not value:
        return False
    return date.fromisoformat(start) <= date.fromisoformat(value[:10]) <= date.fromisoformat(end)


async def get_payments(request: web.Request) -> web.Response:
    state = request.app[EZIDEBIT_STATE]
    if request.headers.get("SOAPAction", "").strip('"') != SOAP_ACTION:
        return soap_fault_answer("s:Client", "The message's action is not one this service has")
    try:
        root = parse_xml(await request.read())
    except EziDebitAnswerError:
        return soap_fault_answer("s:Client", "The message could not be read")
    fields = {e.tag.rsplit("}", 1)[-1]: (e.text or "").strip() for e in root.iter()}
    window = (fields.get("DateFrom", ""), fields.get("DateTo", ""), fields.get("DateField", ""))
    state.requests.append(window)
    if state.scripted:
        scripted = state.scripted.pop(0)
        if scripted == "fault":
            return soap_fault_answer("s:Server", "The service is unavailable")
        answer = get_payments_answer([], scripted, f"Scripted error {scripted}")
        return web.Response(body=answer, content_type="text/xml")
    if fields.get("DigitalKey") != DIGITAL_KEY:
        answer = get_payments_answer([], WRONG_KEY_ERROR, "Invalid DigitalKey")
        return web.Response(body=answer, content_type="text/xml")
    by_date = {"SETTLEMENT": "SettlementDate", "PAYMENT": "DebitDate"}.get(window[2])
    statuses = _TYPES.get(fields.get("PaymentType", "ALL"), None)
    if by_date is None or not all(window[:2]):
        answer = get_payments_answer([], "1", "DateFrom, DateTo and DateField are required")
        return web.Response(body=answer, content_type="text/xml")
    rows = [
        row
        for row in state.payments
        if _in_window(row, by_date, window[0], window[1])
        and (statuses is None or row["PaymentStatus"] in statuses)
    ]
    return web.Response(body=get_payments_answer(rows), content_type="text/xml")


async def add_payment(request: web.Request) -> web.Response:
    body: dict[str, Any] = await request.json()
    row = payment_row(
        str(body["invoice"]),
        str(body["amount"]),
        status=str(body.get("status", "S")),
        payment_id=body.get("payment_id"),
        reason=str(body.get("reason", "")),
    )
    state = request.app[EZIDEBIT_STATE]
    # A payment's later status replaces its earlier one, as Ezidebit reports only the latest.
    state.payments = [p for p in state.payments if p["PaymentID"] != row["PaymentID"]]
    state.payments.append(row)
    return web.json_response(row)


def add_ezidebit_routes(app: web.Application, state: EziDebitState | None = None) -> None:
    app[EZIDEBIT_STATE] = state or EziDebitState()
    app.router.add_post(API_PATH, get_payments)
    app.router.add_post("/_sandbox/ezidebit/payments", add_payment)
