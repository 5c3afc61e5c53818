"""Signed payment notifications from an operator's own system (Standard Webhooks)."""

from __future__ import annotations

import json
import secrets
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from standardwebhooks.webhooks import Webhook

from payhooks.providers.kit.samples import DevSandbox, Sample, SampleRequest, exported_or

# Not a secret: the `bank` source's secret in `payhooks dev`, known to `send-test`.
DEV_SOURCE = "bank"
# Standard Webhooks secrets are base64 (a "whsec_" prefix is optional): "payhooks-dev-only".
DEV_SECRET = "cGF5aG9va3MtZGV2LW9ubHk="  # noqa: S105


def notification(
    *,
    invoice_id: int | None,
    amount: str,
    currency: str = "EUR",
    kind: str = "paid",
    provider: int = 96,
    **extra: Any,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "provider": provider,
        "reference": f"BANK-TX-{secrets.token_hex(6).upper()}",
        "amount": amount,
        "currency": currency,
        "paid_at": datetime.now(tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "kind": kind,
    }
    if invoice_id is not None:
        body["invoice_id"] = invoice_id
    body.update(extra)
    return body


def signed(
    body: dict[str, Any] | bytes,
    secret: str,
    *,
    msg_id: str | None = None,
    timestamp: datetime | None = None,
) -> tuple[bytes, dict[str, str]]:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    msg_id = msg_id or f"msg_{secrets.token_hex(10)}"
    when = timestamp or datetime.now(tz=UTC)
    signature = Webhook(secret).sign(msg_id, when, raw.decode())
    return raw, {
        "Content-Type": "application/json",
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(when.timestamp())),
        "webhook-signature": signature,
    }


def for_send_test(request: SampleRequest) -> Sample:
    sent = notification(
        invoice_id=request.invoice,
        amount=f"{request.amount:.2f}",
        currency=request.currency.upper(),
    )
    pairs = [p.partition(":") for p in request.env.get("GENERIC_WEBHOOK_SECRETS", "").split(",")]
    secret = next((s for source, _, s in pairs if source.strip() == request.source and s), None)
    request.signed_with["GENERIC_WEBHOOK_SECRETS"] = f"{request.source}:{secret or DEV_SECRET}"
    return Sample(
        f"bank transfer {sent['reference']}, {request.amount} {request.currency.upper()}, "
        f"invoice {request.invoice}",
        *signed(sent, secret or DEV_SECRET),
    )


def dev_environment(sandbox: DevSandbox, env: Mapping[str, str]) -> dict[str, str]:
    return {
        "GENERIC_WEBHOOK_SECRETS": exported_or(
            env, "GENERIC_WEBHOOK_SECRETS", f"{DEV_SOURCE}:{DEV_SECRET}"
        )
    }
