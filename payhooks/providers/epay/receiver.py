"""ePay (Bambora Online ePay): GET callbacks with an MD5 over the parameter values.

``hash = md5(the values of every other parameter, in the order received, + secret)``.
ePay calls back when a card is authorised. The event is made paid, as a hint: the job reads
the transaction from ePay's web service and only a captured one stays paid (an authorisation
is not money received; workers/provider_steps/epay.py). There is no event id: the
transaction id (``txnid``) is the payment.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from datetime import UTC, datetime
from urllib.parse import parse_qsl, urlencode
from zoneinfo import ZoneInfo

from payhooks.domain.events import (
    InvoiceRef,
    Normalised,
    PaymentEvent,
    PaymentKind,
    RegularPaymentProvider,
)
from payhooks.domain.money import from_minor_units
from payhooks.providers.epay.formats import CURRENCIES
from payhooks.providers.epay.settings import EPaySettings
from payhooks.providers.kit.receiver_errors import InvalidSignature, MalformedPayload
from payhooks.providers.kit.receiving import SectionReceiver

# ePay reports date and time in Danish local time.
EPAY_TIME_ZONE = ZoneInfo("Europe/Copenhagen")


def hash_of(values: list[str], secret: str) -> str:
    return hashlib.md5(("".join(values) + secret).encode()).hexdigest()  # noqa: S324


def _parameters(query: bytes) -> list[tuple[str, str]]:
    try:
        return parse_qsl(query.decode("utf-8"), keep_blank_values=True)
    except UnicodeDecodeError:
        raise MalformedPayload("query is not UTF-8") from None


class EPayCallback(SectionReceiver[EPaySettings]):
    SECTION = EPaySettings
    name = "epay"
    method = "GET"
    content_types: frozenset[str] = frozenset()  # a GET has no body
    # the hash is a query parameter (no signature header)

    def redact(self, body: bytes) -> bytes | None:
        """``cardno`` (a masked card number, BIN and last digits) removed."""
        parameters = _parameters(body)
        if not any(name == "cardno" for name, _ in parameters):
            return None
        return urlencode(
            [(n, "[redacted]" if n == "cardno" else v) for n, v in parameters]
        ).encode()

    def verify(self, body: bytes, headers: Mapping[str, str]) -> None:
        parameters = _parameters(body)
        given = [value for name, value in parameters if name == "hash"]
        if len(given) != 1:
            raise InvalidSignature("missing hash parameter")
        values = [value for name, value in parameters if name != "hash"]
        expected = given[0].lower()
        if not any(
            hmac.compare_digest(hash_of(values, s), expected) for s in self._settings.md5_secrets
        ):
            raise InvalidSignature("hash does not match")

    def normalise(self, body: bytes, headers: Mapping[str, str]) -> list[Normalised]:
        parameters = dict(_parameters(body))
        txnid, orderid = parameters.get("txnid", ""), parameters.get("orderid", "").strip()
        amount, currency = parameters.get("amount", ""), parameters.get("currency", "")
        if not txnid or not orderid or not amount.isdigit() or not currency:
            raise MalformedPayload("callback without txnid, orderid, amount or currency")
        code = CURRENCIES.get(currency, currency if currency.isalpha() else f"ISO{currency}")
        details = {"paymenttype": parameters.get("paymenttype", "")}
        if parameters.get("subscriptionid"):
            details["subscription"] = parameters["subscriptionid"]
        return [
            PaymentEvent(
                provider=self.name,
                event_id=txnid,
                event_type="payment.authorised",
                kind=PaymentKind.PAID,
                token=txnid,
                invoice=InvoiceRef.from_text(orderid),
                amount=from_minor_units(int(amount), code if len(code) == 3 else "XXX"),
                currency=code.upper(),
                occurred_at=_when(parameters.get("date", ""), parameters.get("time", "")),
                object_id=txnid,
                regular_payment_provider=RegularPaymentProvider.EPAY,
                payment_method="card",
                details=details,
            )
        ]


def _when(date: str, time: str) -> datetime:
    try:
        local = datetime.strptime(date + time.zfill(4), "%Y%m%d%H%M")
    except ValueError:
        return datetime.fromtimestamp(0, tz=UTC)
    return local.replace(tzinfo=EPAY_TIME_ZONE).astimezone(UTC)
