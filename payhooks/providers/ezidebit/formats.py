"""What Ezidebit's non-PCI SOAP service says: the ``GetPayments`` request and answer, and
what one payment row means. Pure (no I/O, no clock): the poller, its stand-in and
`replay-event` read a row alike.

The service (namespace ``https://px.ezidebit.com.au/``, SOAPAction
``https://px.ezidebit.com.au/INonPCIService/GetPayments``) takes every field of a method,
in Ezidebit's order, blank when unused, and answers
``GetPaymentsResponse/GetPaymentsResult`` with ``Data`` (one ``Payment`` per row),
``Error`` (0, or the failure's code) and ``ErrorMessage``.

PaymentStatus (Ezidebit's API specification): S successful ("debited from the Customer and
deposited to the client's settlement bank account"), D dishonoured, F fatal dishonour, W
waiting (scheduled, not yet sent to the bank), P pending (sent, awaiting the bank).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation
from xml.etree.ElementTree import Element
from xml.sax.saxutils import escape

from defusedxml import ElementTree as SafeXml
from defusedxml.common import DefusedXmlException

from payhooks.domain.events import (
    Ignored,
    InvoiceRef,
    Normalised,
    PaymentEvent,
    PaymentKind,
    RegularPaymentProvider,
)

NAME = "ezidebit"
NAMESPACE = "https://px.ezidebit.com.au/"
SOAP_ACTION = f"{NAMESPACE}INonPCIService/GetPayments"
SOAP_ENVELOPE = "http://schemas.xmlsoap.org/soap/envelope/"
XSI_NIL = "{http://www.w3.org/2001/XMLSchema-instance}nil"
#: Ezidebit keeps Australian Eastern time; its dates carry no offset (AEST, no daylight
#: saving: an hour either way is inside the poll's overlap).
EZIDEBIT_TIME = timezone(timedelta(hours=10))
#: An answer larger than this is not read (a window of a few days holds far fewer rows).
MAX_ANSWER_BYTES = 16 * 1024 * 1024

#: A payment row's fields, in the order Ezidebit's GetPayments answer lists them.
PAYMENT_FIELDS = (
    "BankFailedReason",
    "BankReceiptID",
    "BankReturnCode",
    "CustomerName",
    "DebitDate",
    "EzidebitCustomerID",
    "InvoiceID",
    "PaymentAmount",
    "PaymentID",
    "PaymentMethod",
    "PaymentReference",
    "PaymentSource",
    "PaymentStatus",
    "ScheduledAmount",
    "SettlementDate",
    "TransactionFeeClient",
    "TransactionFeeCustomer",
    "TransactionTime",
    "YourGeneralReference",
    "YourSystemReference",
)

PAID = "S"
DISHONOURED = ("D", "F")
PENDING = ("W", "P")
#: What Ezidebit writes in BankFailedReason for a payment the bank took back after it
#: settled (a "late return": a row of the original reference with a negative amount).
LATE_RETURN = "late return"

#: Details the step reads.
BANK_REASON = "bank_reason"
LATE = "late_return"

#: A payment row: each field's text, None where Ezidebit sent it nil or not at all.
Row = dict[str, str | None]


class EziDebitAnswerError(Exception):
    """Ezidebit's answer cannot be read, or says the call failed (``Error`` not 0)."""

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.code = code


def get_payments_request(digital_key: str, date_from: date, date_to: date) -> bytes:
    """The envelope of ``GetPayments`` for every payment settled (or failed) in the window."""
    fields = {
        "DigitalKey": digital_key,
        "PaymentType": "ALL",
        "PaymentMethod": "ALL",
        "PaymentSource": "ALL",
        "PaymentReference": "",
        "DateFrom": date_from.isoformat(),
        "DateTo": date_to.isoformat(),
        "DateField": "SETTLEMENT",
        "EziDebitCustomerID": "",
        "YourSystemReference": "",
    }
    body = "".join(f"<px:{k}>{escape(v)}</px:{k}>" for k, v in fields.items())
    return (
        '<?xml version="1.0" encoding="utf-8"?>'
        f'<soapenv:Envelope xmlns:soapenv="{SOAP_ENVELOPE}" xmlns:px="{NAMESPACE}">'
        f"<soapenv:Header/><soapenv:Body><px:GetPayments>{body}</px:GetPayments>"
        "</soapenv:Body></soapenv:Envelope>"
    ).encode()


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _child(element: Element, name: str) -> Element | None:
    return next((c for c in element if _local(c.tag) == name), None)


def _text(element: Element | None) -> str | None:
    if element is None or element.get(XSI_NIL) == "true":
        return None
    return (element.text or "").strip()


def parse_xml(answer: bytes) -> Element:
    """Parse a SOAP answer safely: bounded, no DTD, no entities."""
    if len(answer) > MAX_ANSWER_BYTES:
        raise EziDebitAnswerError(f"the answer is larger than {MAX_ANSWER_BYTES} bytes")
    try:
        root: Element = SafeXml.fromstring(answer, forbid_dtd=True)
    except (SafeXml.ParseError, DefusedXmlException) as exc:
        raise EziDebitAnswerError(
            f"the answer is not XML we read ({exc.__class__.__name__})"
        ) from None
    return root


def soap_fault(root: Element) -> tuple[str, str] | None:
    """A SOAP fault's code and text, when the answer is one."""
    fault = next((e for e in root.iter() if _local(e.tag) == "Fault"), None)
    if fault is None:
        return None
    code = _text(_child(fault, "faultcode")) or ""
    text = _text(_child(fault, "faultstring")) or ""
    return code, text


def payment_rows(root: Element) -> list[Row]:
    """The ``Payment`` rows of a ``GetPayments`` answer; raises when its ``Error`` is not 0."""
    result = next((e for e in root.iter() if _local(e.tag) == "GetPaymentsResult"), None)
    if result is None:
        raise EziDebitAnswerError("the answer has no GetPaymentsResult")
    error = _text(_child(result, "Error"))
    if error != "0":
        message = _text(_child(result, "ErrorMessage")) or ""
        raise EziDebitAnswerError(
            f"Ezidebit answered Error {str(error)[:10]}: {message[:200]}", code=error
        )
    data = _child(result, "Data")
    rows = []
    for payment in data if data is not None else ():
        if _local(payment.tag) != "Payment":
            continue
        row: Row = {name: None for name in PAYMENT_FIELDS}
        for field in payment:
            name = _local(field.tag)
            # Spelled EziDebitCustomerID in some of Ezidebit's examples: one key for both.
            name = "EzidebitCustomerID" if name.lower() == "ezidebitcustomerid" else name
            row[name] = _text(field)
        rows.append(row)
    return rows


def record_of(row: Row) -> bytes:
    """A row as the poll keeps it (its events' origin): JSON, its fields in Ezidebit's order."""
    return json.dumps(row, separators=(",", ":")).encode()


def ezidebit_time(value: str | None) -> datetime | None:
    """An Ezidebit date-time (no offset: Australian Eastern), or None when unreadable."""
    if not value:
        return None
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=EZIDEBIT_TIME)


def _amount(value: str | None) -> Decimal | None:
    try:
        amount = Decimal(str(value))
    except InvalidOperation:
        return None
    return amount if amount.is_finite() else None


def normalise_row(record: bytes, currency: str) -> list[Normalised]:
    """One payment row: its event, keyed by its PaymentID and status (a payment that goes
    from pending to settled, or settled to dishonoured, is a new event each time)."""
    row: Mapping[str, str | None] = json.loads(record)
    payment_id = (row.get("PaymentID") or "").strip()
    status = (row.get("PaymentStatus") or "").strip().upper()
    if not payment_id:
        digest = hashlib.sha256(record).hexdigest()[:16]
        return [
            Ignored(f"no-id-{digest}", f"payment.{status or 'unknown'}", "row has no PaymentID")
        ]
    event_id = f"{payment_id}-{status or 'unknown'}"
    amount = _amount(row.get("PaymentAmount"))
    reason = (row.get("BankFailedReason") or "").strip()
    late = reason.lower() == LATE_RETURN or (amount is not None and amount < 0)
    if late:
        event_id += "-late-return"
    if status == PAID and not late:
        kind = PaymentKind.PAID
        if amount is None or amount <= 0:
            return [Ignored(event_id, "payment.S", "settled row without a readable PaymentAmount")]
    elif status in DISHONOURED or late:
        kind = PaymentKind.FAILED
    elif status in PENDING:
        kind = PaymentKind.PENDING
    else:
        return [Ignored(event_id, f"payment.{status[:8]}", "PaymentStatus payhooks does not know")]
    details = {"status": status}
    if reason:
        details[BANK_REASON] = reason[:200]
    if row.get("BankReturnCode"):
        details["bank_return_code"] = str(row["BankReturnCode"])[:20]
    if late:
        details[LATE] = "true"
    reference = (row.get("PaymentReference") or "").strip() or (
        row.get("YourSystemReference") or ""
    ).strip()
    # When the money settled (or Ezidebit heard it failed); a row not settled yet, its debit.
    when = ezidebit_time(row.get("SettlementDate")) or ezidebit_time(row.get("DebitDate"))
    return [
        PaymentEvent(
            provider=NAME,
            event_id=event_id,
            event_type=f"payment.{status}",
            kind=kind,
            token=payment_id,
            invoice=InvoiceRef.from_text(reference),
            amount=None if amount is None else abs(amount),
            currency=currency,
            # Unreadable: the epoch, which the paid-date rule never believes.
            occurred_at=when or datetime(1970, 1, 1, tzinfo=UTC),
            object_id=payment_id,
            regular_payment_provider=RegularPaymentProvider.EZIDEBIT,
            payment_method={"CR": "card", "DR": "bank_account"}.get(row.get("PaymentMethod") or ""),
            details=details,
        )
    ]
