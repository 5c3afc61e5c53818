"""LiqPay sample callbacks, shaped like LiqPay's documented callback, and signed."""

from __future__ import annotations

import base64
import json
import secrets
import time
from collections.abc import Mapping
from decimal import Decimal
from typing import Any
from urllib.parse import urlencode

from payhooks.providers.kit.samples import DevSandbox, Sample, SampleRequest, exported_or
from payhooks.providers.liqpay.receiver import signature_of

# Not a secret: the private key of `payhooks dev`, known to `send-test`.
DEV_PRIVATE_KEY = "payhooks_dev_only_liqpay_key"


def payment(
    *,
    order_id: str,
    amount: Decimal,
    currency: str = "UAH",
    status: str = "success",
    payment_id: int | None = None,
) -> dict[str, Any]:
    now_ms = int(time.time() * 1000)
    return {
        "action": "pay",
        "payment_id": payment_id or secrets.randbelow(10**9),
        "status": status,
        "version": 3,
        "type": "buy",
        "paytype": "card",
        "public_key": "sandbox_i00000000",
        "acq_id": 414963,
        "order_id": order_id,
        "liqpay_order_id": "NYMK3AE61501685438251925",
        "description": "Coworking membership",
        "sender_card_mask2": "424242*42",
        "amount": float(amount),
        "currency": currency,
        "sender_commission": 0.0,
        "receiver_commission": 0.0,
        "create_date": now_ms - 5000,
        "end_date": now_ms,
        "transaction_id": secrets.randbelow(10**9),
    }


def signed(
    payment_data: dict[str, Any], private_key: str, scheme: str = "sha1"
) -> tuple[bytes, dict[str, str]]:
    """Signed as LiqPay signs: ``scheme`` "sha1" (documented) or "sha3_256" (newer)."""
    data = base64.b64encode(json.dumps(payment_data).encode()).decode()
    signature = signature_of(private_key, data, scheme)
    body = urlencode({"data": data, "signature": signature}).encode()
    return body, {"Content-Type": "application/x-www-form-urlencoded"}


def for_send_test(request: SampleRequest) -> Sample:
    sent = payment(order_id=str(request.invoice), amount=request.amount, currency=request.currency)
    return Sample(
        f"status success, payment {sent['payment_id']}, {request.amount} "
        f"{request.currency.upper()}, order {request.invoice}",
        *signed(sent, request.secret("LIQPAY_PRIVATE_KEYS", DEV_PRIVATE_KEY)),
    )


def dev_environment(sandbox: DevSandbox, env: Mapping[str, str]) -> dict[str, str]:
    return {"LIQPAY_PRIVATE_KEYS": exported_or(env, "LIQPAY_PRIVATE_KEYS", DEV_PRIVATE_KEY)}
