"""Confirms an ePay callback with ePay's web service before any money is recorded.

ePay's MD5 covers the parameter values only, joined without separators, so the names and
the boundaries between values are not authenticated: a payer who saw a genuine signed
query could rearrange it. The job therefore reads the transaction from ePay
(``gettransaction``) and requires its order id, amount, currency and status to match.

The callback comes when the card is **authorised**, which is not money received: ePay's
payment web service documentation (epay.bambora.com/en/payment-web-service, "Data flow")
says a completed purchase is authorised, and only ``capture`` makes the acquirer transfer
the captured amount to the merchant; before capture the merchant can ``delete`` the
payment and the whole amount is released to the card holder. So ePay's status decides:
``PAYMENT_CAPTURED`` (the payment window's instant capture, or captured since) is paid, at
the captured amount less anything credited back; ``PAYMENT_NEW`` (authorised, not
captured) and Euroline's ``PAYMENT_EUROLINE_WAIT_CAPTURE`` are pending (token only).
"""

from __future__ import annotations

from decimal import Decimal
from xml.etree import ElementTree

from payhooks.domain.events import PaymentEvent, PaymentKind
from payhooks.domain.money import from_minor_units, to_minor_units
from payhooks.providers.epay.formats import NUMERIC_CODES
from payhooks.providers.epay.settings import EPaySettings
from payhooks.providers.kit.provider_api import ProviderApi
from payhooks.providers.kit.section_step import SectionStep
from payhooks.providers.kit.step_errors import ProviderLookupError, ProviderLookupUnavailable

NAMESPACE = "https://ssl.ditonlinebetalingssystem.dk/remote/payment"
CAPTURED = "PAYMENT_CAPTURED"
#: Authorised, not captured: the money may still be released to the card holder.
AUTHORISED_ONLY = frozenset({"PAYMENT_NEW", "PAYMENT_EUROLINE_WAIT_CAPTURE"})


def gettransaction_request(merchant_number: str, transaction_id: str, password: str) -> bytes:
    def text(value: str) -> str:
        return value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")

    return f"""<?xml version="1.0" encoding="utf-8"?>
<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/">
  <soap:Body>
    <gettransaction xmlns="{NAMESPACE}">
      <merchantnumber>{text(merchant_number)}</merchantnumber>
      <transactionid>{text(transaction_id)}</transactionid>
      <epayresponse>-1</epayresponse>
      <pwd>{text(password)}</pwd>
    </gettransaction>
  </soap:Body>
</soap:Envelope>""".encode()


def _values(xml: bytes) -> dict[str, str]:
    """Every leaf element's text by local name (namespaces dropped)."""
    root = ElementTree.fromstring(xml)  # noqa: S314
    return {
        element.tag.rsplit("}", 1)[-1]: (element.text or "").strip()
        for element in root.iter()
        if len(element) == 0
    }


# ePay's SOAP service answers a wrong password inside a 200; a 401/403 is not ours.
WEB_SERVICE = ProviderApi("ePay's web service", credentials=None)


class EPayStep(SectionStep[EPaySettings]):
    SECTION = EPaySettings

    def __call__(self, event: PaymentEvent) -> PaymentEvent:
        if not self._settings.merchant_number:
            raise ProviderLookupError(
                "EPAY_MERCHANT_NUMBER is needed to confirm ePay callbacks before money is recorded"
            )
        values = self._fetch(event.token)
        if values.get("gettransactionResult") != "true":
            raise ProviderLookupError(
                f"ePay has no transaction {event.token} (epayresponse {values.get('epayresponse')})"
            )
        expected_order = str(
            event.invoice.invoice_id
            if event.invoice.invoice_id is not None
            else event.invoice.number
        )
        numeric = NUMERIC_CODES.get(event.currency or "", "")
        amount = to_minor_units(event.amount or Decimal(0), event.currency or "XXX")
        mismatches = [
            name
            for name, ours, theirs in (
                ("orderid", expected_order, values.get("orderid", "")),
                ("amount", str(amount), values.get("authamount", "")),
                ("currency", numeric, values.get("currency", "")),
            )
            if ours != theirs
        ]
        if mismatches:
            raise ProviderLookupError(
                f"the callback does not match ePay's record of transaction {event.token} "
                f"({', '.join(mismatches)} differ): not recorded"
            )
        status = values.get("status", "")
        if status in AUTHORISED_ONLY:
            return event.with_changes(kind=PaymentKind.PENDING)
        if status != CAPTURED:
            raise ProviderLookupError(
                f"ePay transaction {event.token} is {status or 'of unknown status'}"
            )
        return event.with_changes(kind=PaymentKind.PAID, amount=self._received(event, values))

    @staticmethod
    def _received(event: PaymentEvent, values: dict[str, str]) -> Decimal:
        """What the merchant got: captured, less anything credited back already."""
        captured, credited = values.get("capturedamount", ""), values.get("creditedamount") or "0"
        if not (captured.isdigit() and credited.isdigit()):
            raise ProviderLookupError(
                f"ePay's record of transaction {event.token} has no readable capturedamount"
                " or creditedamount: not recorded"
            )
        if int(credited):
            raise ProviderLookupError(
                f"ePay transaction {event.token} was captured ({captured}) and "
                f"{credited} credited back (minor units): record it by hand"
            )
        return from_minor_units(int(captured), event.currency or "XXX")

    def _fetch(self, transaction_id: str) -> dict[str, str]:
        response = WEB_SERVICE.send(
            "POST",
            self._settings.api_url,
            content=gettransaction_request(
                self._settings.merchant_number or "",
                transaction_id,
                self._settings.api_password or "",
            ),
            headers={
                "Content-Type": "text/xml; charset=utf-8",
                "SOAPAction": f'"{NAMESPACE}/gettransaction"',
            },
        )
        if response.status_code != 200:
            raise ProviderLookupUnavailable(f"ePay's web service answered {response.status_code}")
        try:
            return _values(response.content)
        except ElementTree.ParseError:
            raise ProviderLookupUnavailable("ePay's web service answered no XML") from None
