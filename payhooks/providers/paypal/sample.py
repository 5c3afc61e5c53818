"""PayPal sample webhooks (REST) and IPN messages, shaped like PayPal's."""

from __future__ import annotations

import json
import secrets
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from payhooks.providers.kit.samples import DevSandbox, Sample, SampleRequest, exported_or
from payhooks.providers.paypal.ipn_formats import PAYPAL_TIME
from payhooks.providers.paypal.receiver import signed_message
from payhooks.providers.paypal.stand_in import (
    CERT_PATH,
    CLIENT_ID,
    CLIENT_SECRET,
    PayPalState,
    capture_event,
)

# Not secrets: the webhook id and receiver address of `payhooks dev`.
DEV_WEBHOOK_ID = "WH-PAYHOOKS-DEV-ONLY"
DEV_RECEIVER_EMAIL = "billing@coworking.example"


def headers_for(body: bytes, webhook_id: str, cert_url: str, signer: Any) -> dict[str, str]:
    """The transmission headers PayPal sends; ``signer(message) -> base64 signature``."""
    transmission = {
        "PAYPAL-TRANSMISSION-ID": str(uuid.uuid4()),
        "PAYPAL-TRANSMISSION-TIME": datetime.now(tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "PAYPAL-CERT-URL": cert_url,
        "PAYPAL-AUTH-ALGO": "SHA256withRSA",
        "Content-Type": "application/json",
    }
    transmission["PAYPAL-TRANSMISSION-SIG"] = signer(signed_message(transmission, webhook_id, body))
    return transmission


def encoded(event: dict[str, Any]) -> bytes:
    return json.dumps(event).encode()


def ipn(
    *,
    invoice: str,
    amount: Decimal,
    currency: str = "EUR",
    status: str = "Completed",
    receiver_email: str = DEV_RECEIVER_EMAIL,
    txn_id: str | None = None,
    parent_txn_id: str | None = None,
    payment_date: str = "10:14:20 Nov 20, 2026 PST",
) -> bytes:
    """An IPN as PayPal posts it; a refund or reversal names ``parent_txn_id``.

    Fields as listed in PayPal's IPN variables reference
    (developer.paypal.com/api/nvp-soap/ipn/IPNandPDTVariables/): a refund's ``mc_gross``
    is negative and its ``parent_txn_id`` is the payment it undoes.
    """
    refund = {"parent_txn_id": parent_txn_id, "reason_code": "refund"} if parent_txn_id else {}
    return urlencode(
        {
            **refund,
            "mc_gross": f"{amount:.2f}",
            "invoice": invoice,
            "protection_eligibility": "Eligible",
            "payer_id": "LPLWNMTBWMFAY",
            "payment_date": payment_date,
            "payment_status": status,
            "charset": "windows-1252",
            "first_name": "Ana",
            "mc_fee": "0.88",
            "notify_version": "3.9",
            "subscr_id": "I-PAYHOOKS0001",
            "payer_status": "verified",
            "business": receiver_email,
            "receiver_email": receiver_email,
            "txn_id": txn_id or secrets.token_hex(8).upper(),
            "payment_type": "instant",
            "txn_type": "subscr_payment",
            "mc_currency": currency,
            "ipn_track_id": secrets.token_hex(6),
        }
    ).encode()


def for_send_test(request: SampleRequest) -> Sample:
    # PayPal signs with its certificate's key: in dev, the sandbox holds the stand-in's.
    sandbox = request.sandbox_url.rstrip("/")
    sent = capture_event(
        invoice_id=str(request.invoice), amount=request.amount, currency=request.currency.upper()
    )
    body = encoded(sent)

    def sign(message: bytes) -> str:
        answer = request.to_sandbox("paypal/sign", {"message": message.decode()})
        return str(answer.json()["signature"])

    webhook_id = request.secret("PAYPAL_WEBHOOK_IDS", DEV_WEBHOOK_ID)
    headers = headers_for(body, webhook_id, sandbox + CERT_PATH, sign)
    return Sample(
        f"PAYMENT.CAPTURE.COMPLETED {sent['id']}, {request.amount}, invoice {request.invoice}",
        body,
        headers,
    )


def ipn_for_send_test(request: SampleRequest) -> Sample:
    body = ipn(
        invoice=str(request.invoice),
        amount=request.amount,
        currency=request.currency.upper(),
        receiver_email=request.secret("PAYPAL_IPN_RECEIVER_EMAILS", DEV_RECEIVER_EMAIL),
        payment_date=_paypal_time_now(),
    )
    return Sample(
        f"IPN subscr_payment Completed, {request.amount}, invoice {request.invoice}",
        body,
        {"Content-Type": "application/x-www-form-urlencoded"},
        url_token=request.secret("PAYPAL_IPN_URL_TOKENS", "") or None,
    )


def dev_environment(sandbox: DevSandbox, env: Mapping[str, str]) -> dict[str, str]:
    """Certificates from the stand-in, whose CA is trusted instead of the real roots."""
    state = sandbox.states.get("paypal")
    if not isinstance(state, PayPalState):
        raise TypeError("PayPal's dev settings need the stand-in's PayPalState")
    trust_file = Path(sandbox.data_dir) / "sandbox-paypal-ca.pem"
    trust_file.write_bytes(state.ca_pem)
    return {
        "PAYPAL_WEBHOOK_IDS": exported_or(env, "PAYPAL_WEBHOOK_IDS", DEV_WEBHOOK_ID),
        "PAYPAL_CERT_URL_PREFIXES": f"{sandbox.url}/paypal/",
        "PAYPAL_CERT_TRUST_FILE": str(trust_file),
        # The stand-in's REST app: `payhooks reconcile paypal` reads its events list.
        "PAYPAL_CLIENT_ID": CLIENT_ID,
        "PAYPAL_CLIENT_SECRET": CLIENT_SECRET,
        "PAYPAL_API_BASE": sandbox.url,
    }


def ipn_dev_environment(sandbox: DevSandbox, env: Mapping[str, str]) -> dict[str, str]:
    return {
        "PAYPAL_IPN_RECEIVER_EMAILS": exported_or(
            env, "PAYPAL_IPN_RECEIVER_EMAILS", DEV_RECEIVER_EMAIL
        ),
        "PAYPAL_IPN_URL": f"{sandbox.url}/cgi-bin/webscr",
    }


def _paypal_time_now() -> str:
    """Now, as PayPal writes an IPN's ``payment_date`` (its own Pacific time)."""
    now = datetime.now(tz=PAYPAL_TIME)
    return now.strftime("%H:%M:%S %b %d, %Y ") + (now.tzname() or "PST")
