"""Authorize.Net's `check-config --probe` call: transaction details of transaction 0."""

from __future__ import annotations

import json
from functools import partial

import httpx

from payhooks.providers.authorizenet.settings import AuthorizeNetSettings
from payhooks.providers.kit.probes import Check, ProbeResult


def checks(section: AuthorizeNetSettings, http: httpx.Client) -> list[Check]:
    if not (section.login_id and section.transaction_key):
        return []
    return [("Authorize.Net API login", partial(_authorizenet, section, http))]


def _authorizenet(section: AuthorizeNetSettings, http: httpx.Client) -> ProbeResult:
    request = {
        "getTransactionDetailsRequest": {
            "merchantAuthentication": {
                "name": section.login_id,
                "transactionKey": section.transaction_key,
            },
            "transId": "0",
        }
    }
    url = section.api_url
    answer = http.post(
        url, content=json.dumps(request), headers={"Content-Type": "application/json"}
    )
    try:
        body = json.loads(answer.content.decode("utf-8-sig"))  # the API sends a BOM
        message = body["messages"]["message"][0]
        code, text = str(message["code"]), str(message["text"])
    except (ValueError, KeyError, IndexError, TypeError):
        return ProbeResult("Authorize.Net API login", False, f"{url}: HTTP {answer.status_code}")
    # E00040 (no such transaction) can only come once the login was accepted.
    if code in ("I00001", "E00040"):
        return ProbeResult("Authorize.Net API login", True, f"{url} accepted the login")
    return ProbeResult("Authorize.Net API login", False, f"{url}: {code} {text}")
