"""ePay sample callbacks: the query string ePay sends to callbackurl, with its hash."""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from datetime import datetime
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from payhooks.domain.money import to_minor_units
from payhooks.providers.epay.formats import NUMERIC_CODES
from payhooks.providers.epay.receiver import hash_of
from payhooks.providers.epay.stand_in import API_PATH, MERCHANT_NUMBER
from payhooks.providers.kit.samples import DevSandbox, Sample, SampleRequest, exported_or

# Not a secret: the MD5 secret of `payhooks dev`, known to `send-test`.
DEV_SECRET = "payhooks_dev_only_epay_secret"  # noqa: S105


def callback(
    *, orderid: str, amount_minor: int, currency: str = "978", txnid: int | None = None
) -> list[tuple[str, str]]:
    now = datetime.now(tz=ZoneInfo("Europe/Copenhagen"))
    return [
        ("txnid", str(txnid or secrets.randbelow(10**10))),
        ("orderid", orderid),
        ("amount", str(amount_minor)),
        ("currency", currency),
        ("date", now.strftime("%Y%m%d")),
        ("time", now.strftime("%H%M")),
        ("txnfee", "0"),
        ("paymenttype", "3"),
        ("cardno", "444444XXXXXX4444"),
    ]


def signed_query(parameters: list[tuple[str, str]], secret: str) -> str:
    """The query string, hash last, as ePay sends it."""
    digest = hash_of([value for _, value in parameters], secret)
    return urlencode([*parameters, ("hash", digest)])


def for_send_test(request: SampleRequest) -> Sample:
    parameters = callback(
        orderid=str(request.invoice),
        amount_minor=to_minor_units(request.amount, request.currency),
        currency=NUMERIC_CODES.get(request.currency.upper(), request.currency),
    )
    values = dict(parameters)
    # The job confirms the transaction with ePay: register it with the sandbox first.
    # Captured at once, as the payment window's instantcapture=1 does: an authorisation
    # alone is not money received (the job records it as pending).
    request.to_sandbox(
        "epay/transactions",
        {
            **{key: values[key] for key in ("txnid", "orderid", "amount", "currency")},
            "status": "PAYMENT_CAPTURED",
        },
    )
    secret = request.secret("EPAY_MD5_SECRETS", DEV_SECRET)
    return Sample(
        f"txnid {parameters[0][1]}, {request.amount} {request.currency.upper()}, "
        f"order {request.invoice}",
        query=signed_query(parameters, secret),
    )


def dev_environment(sandbox: DevSandbox, env: Mapping[str, str]) -> dict[str, str]:
    return {
        "EPAY_MD5_SECRETS": exported_or(env, "EPAY_MD5_SECRETS", DEV_SECRET),
        "EPAY_MERCHANT_NUMBER": MERCHANT_NUMBER,
        "EPAY_API_URL": f"{sandbox.url}{API_PATH}",
    }
