"""ePay's `check-config --probe` call: gettransaction for the configured merchant."""

from __future__ import annotations

from functools import partial
from xml.etree import ElementTree

import httpx

from payhooks.providers.epay.settings import EPaySettings
from payhooks.providers.kit.probes import Check, ProbeResult


def checks(section: EPaySettings, http: httpx.Client) -> list[Check]:
    if not section.merchant_number:
        return []
    return [("ePay web service", partial(_epay, section, http))]


def _epay(section: EPaySettings, http: httpx.Client) -> ProbeResult:
    from payhooks.providers.epay.step import NAMESPACE, gettransaction_request

    url = section.api_url
    answer = http.post(
        url,
        content=gettransaction_request(
            section.merchant_number or "", "0", section.api_password or ""
        ),
        headers={
            "Content-Type": "text/xml; charset=utf-8",
            "SOAPAction": f'"{NAMESPACE}/gettransaction"',
        },
    )
    try:
        root = ElementTree.fromstring(answer.content)  # noqa: S314 (our own configured service)
    except ElementTree.ParseError:
        return ProbeResult("ePay web service", False, f"{url}: HTTP {answer.status_code}")
    code = next((e.text for e in root.iter() if e.tag.endswith("epayresponse")), None)
    if answer.status_code != 200 or code is None:
        return ProbeResult("ePay web service", False, f"{url}: HTTP {answer.status_code}")
    # ePay answers an unknown transaction and a wrong merchant alike: the service answers,
    # but nothing here proves the merchant number and password are right.
    return ProbeResult(
        "ePay web service",
        True,
        f"{url} answered gettransaction for merchant {section.merchant_number} "
        f"(epayresponse {code}); the credentials are not proven: ePay answers a wrong "
        "merchant alike, each job's lookup checks them",
        proven=False,
    )
