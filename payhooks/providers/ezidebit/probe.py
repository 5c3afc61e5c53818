"""EziDebit's `check-config --probe` call: GetPayments for today, read-only."""

from __future__ import annotations

from functools import partial

import httpx

from payhooks.providers.ezidebit.formats import (
    SOAP_ACTION,
    EziDebitAnswerError,
    get_payments_request,
    parse_xml,
    payment_rows,
    soap_fault,
)
from payhooks.providers.ezidebit.poller import ezidebit_now
from payhooks.providers.ezidebit.settings import EziDebitSettings
from payhooks.providers.kit.probes import Check, ProbeResult

TARGET = "Ezidebit GetPayments"


def checks(section: EziDebitSettings, http: httpx.Client) -> list[Check]:
    if not section.digital_key:
        return []
    return [(TARGET, partial(_get_payments, section, http))]


def _get_payments(section: EziDebitSettings, http: httpx.Client) -> ProbeResult:
    key = section.digital_key or ""
    today = ezidebit_now().date()
    answer = http.post(
        section.api_url,
        content=get_payments_request(key, today, today),
        headers={"Content-Type": "text/xml; charset=utf-8", "SOAPAction": SOAP_ACTION},
    )
    where = f"{section.api_url}: HTTP {answer.status_code}"
    try:
        root = parse_xml(answer.content)
        fault = soap_fault(root)
        if fault is not None:
            return ProbeResult(TARGET, False, f"{where}, SOAP fault {fault[0][:60]}")
        rows = payment_rows(root)
    except EziDebitAnswerError as exc:
        return ProbeResult(TARGET, False, f"{where}, {str(exc).replace(key, '***')[:200]}")
    return ProbeResult(TARGET, True, f"{where}, Error 0 ({len(rows)} payments settled today)")
