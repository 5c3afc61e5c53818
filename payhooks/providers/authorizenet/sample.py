"""Authorize.Net sample notifications, shaped like Authorize.Net's, and signed."""

from __future__ import annotations

import json
import secrets
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from payhooks.providers.authorizenet.receiver import signature_of
from payhooks.providers.authorizenet.stand_in import LOGIN_ID, TRANSACTION_KEY
from payhooks.providers.kit.samples import DevSandbox, Sample, SampleRequest, exported_or

# Not a secret: the Signature Key of `payhooks dev`, known to `send-test`.
DEV_SIGNATURE_KEY = "PAYHOOKS-DEV-ONLY-SIGNATURE-KEY"


def notification(
    transaction_id: str | None = None,
    *,
    amount: Decimal = Decimal("100.00"),
    event: str = "authcapture.created",
) -> dict[str, Any]:
    return {
        "notificationId": str(uuid.uuid4()),
        "eventType": f"net.authorize.payment.{event}",
        "eventDate": datetime.now(tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.%f0Z"),
        "webhookId": str(uuid.uuid4()),
        "payload": {
            "responseCode": 1,
            "authCode": "Z3PV5H",
            "avsResponse": "Y",
            "authAmount": float(amount),
            "entityName": "transaction",
            "id": transaction_id or str(secrets.randbelow(10**11)),
        },
    }


def signed(body: dict[str, Any] | bytes, key: str) -> tuple[bytes, dict[str, str]]:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return raw, {
        "Content-Type": "application/json",
        "X-ANET-Signature": "sha512=" + signature_of(key, raw).upper(),
    }


def for_send_test(request: SampleRequest) -> Sample:
    # The job confirms the transaction with the API: register it with the sandbox first.
    sent = notification(amount=request.amount)
    transaction_id = sent["payload"]["id"]
    request.to_sandbox(
        "authorizenet/transactions",
        {
            "id": transaction_id,
            "invoice_number": str(request.invoice),
            "amount": str(request.amount),
        },
    )
    key = request.secret("AUTHORIZENET_SIGNATURE_KEYS", DEV_SIGNATURE_KEY)
    return Sample(
        f"authcapture.created {transaction_id}, {request.amount}, invoice {request.invoice}",
        *signed(sent, key),
    )


def dev_environment(sandbox: DevSandbox, env: Mapping[str, str]) -> dict[str, str]:
    return {
        "AUTHORIZENET_SIGNATURE_KEYS": exported_or(
            env, "AUTHORIZENET_SIGNATURE_KEYS", DEV_SIGNATURE_KEY
        ),
        "AUTHORIZENET_LOGIN_ID": LOGIN_ID,
        "AUTHORIZENET_TRANSACTION_KEY": TRANSACTION_KEY,
        "AUTHORIZENET_API_URL": f"{sandbox.url}/xml/v1/request.api",
        "AUTHORIZENET_CURRENCY": "EUR",
    }
