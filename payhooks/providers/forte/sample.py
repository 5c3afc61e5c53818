"""Forte sample webhooks, shaped like Forte's published one (support.forte.net article
1000102770). Forte signs nothing: the URL's token is what `send-test` must know."""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from payhooks.providers.forte.stand_in import (
    API_ACCESS_ID,
    API_PATH,
    API_SECURE_KEY,
    LOCATION_ID,
    ORGANIZATION_ID,
    forte_now,
)
from payhooks.providers.kit.samples import DevSandbox, Sample, SampleRequest, exported_or

# Not a secret: the URL token of `payhooks dev`, known to `send-test`.
DEV_URL_TOKEN = "payhooks-dev-only-forte-url-token"  # noqa: S105


def webhook(
    transaction_id: str | None = None,
    *,
    amount: Decimal = Decimal("100.00"),
    order_number: str = "42",
    status: str = "ready",
    action: str = "sale",
    location_id: str = LOCATION_ID,
    received_date: str | None = None,
) -> dict[str, Any]:
    """A transaction webhook; its status and amount are only hints (the job asks the API)."""
    transaction_id = transaction_id or f"trn_{uuid.uuid4()}"
    return {
        "location_id": location_id,
        "transaction": {
            "transaction_id": transaction_id,
            "organization_id": ORGANIZATION_ID,
            "location_id": location_id,
            "customer_id": "Account-ID-4444",
            "order_number": order_number,
            "reference_id": "reference ID",
            "status": status,
            "action": action,
            "authorization_amount": float(amount),
            "authorization_code": "7EZ442",
            "entered_by": "2976300bb69f08b2dfe5",
            "received_date": received_date or forte_now(),
        },
    }


def encoded(body: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
    return json.dumps(body).encode(), {"Content-Type": "application/json"}


def for_send_test(request: SampleRequest) -> Sample:
    # The job reads the transaction back from the API: register it with the sandbox first.
    sent = webhook(amount=request.amount, order_number=str(request.invoice))
    transaction_id = sent["transaction"]["transaction_id"]
    request.to_sandbox(
        "forte/transactions",
        {"id": transaction_id, "order_number": str(request.invoice), "amount": str(request.amount)},
    )
    body, headers = encoded(sent)
    return Sample(
        f"transaction.sale {transaction_id}, {request.amount}, invoice {request.invoice}",
        body,
        headers,
        url_token=request.secret("FORTE_WEBHOOK_TOKENS", DEV_URL_TOKEN),
    )


def dev_environment(sandbox: DevSandbox, env: Mapping[str, str]) -> dict[str, str]:
    return {
        "FORTE_WEBHOOK_TOKENS": exported_or(env, "FORTE_WEBHOOK_TOKENS", DEV_URL_TOKEN),
        "FORTE_ORGANIZATION_ID": ORGANIZATION_ID,
        "FORTE_API_ACCESS_ID": API_ACCESS_ID,
        "FORTE_API_SECURE_KEY": API_SECURE_KEY,
        "FORTE_API_URL": f"{sandbox.url}{API_PATH}",
        "FORTE_CURRENCY": "EUR",  # the sandbox's invoices are in euros
        "FORTE_LOCATION_IDS": LOCATION_ID,  # the stand-in's, for `payhooks reconcile forte`
    }
