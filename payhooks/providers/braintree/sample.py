"""Braintree sample notifications, signed as Braintree signs them.

The SDK's ``webhook_testing.sample_notification`` makes validly signed samples but no
order id; ``transaction_notification`` builds the same XML with one, signed by the SDK's
own crypto helper, so the SDK's parser verifies it like a real notification.
"""

from __future__ import annotations

import secrets
from base64 import encodebytes
from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal
from urllib.parse import urlencode

from braintree.util.crypto import Crypto

from payhooks.providers.braintree.stand_in import DEV_MERCHANT_ID, DEV_PRIVATE_KEY, DEV_PUBLIC_KEY
from payhooks.providers.kit.samples import DevSandbox, Sample, SampleRequest, exported_or

__all__ = [
    "DEV_MERCHANT_ID",
    "DEV_PRIVATE_KEY",
    "DEV_PUBLIC_KEY",
    "dev_environment",
    "for_send_test",
    "signed",
    "transaction_notification",
]


def transaction_notification(
    kind: str,
    *,
    order_id: str,
    amount: Decimal,
    currency: str = "EUR",
    transaction_id: str | None = None,
) -> str:
    transaction = f"""
        <transaction>
          <id>{transaction_id or secrets.token_hex(4)}</id>
          <status>settled</status>
          <type>sale</type>
          <order-id>{order_id}</order-id>
          <currency-iso-code>{currency}</currency-iso-code>
          <amount>{amount}</amount>
          <payment-instrument-type>us_bank_account</payment-instrument-type>
        </transaction>"""
    subject = transaction
    if kind.startswith("subscription_"):
        subject = f"""
        <subscription>
          <id>sub_{secrets.token_hex(3)}</id>
          <payment-method-token>pm_token_1</payment-method-token>
          <transactions type="array">{transaction}</transactions>
          <add-ons type="array"></add-ons>
          <discounts type="array"></discounts>
        </subscription>"""
    timestamp = datetime.now(tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return f"""<notification>
        <timestamp type="datetime">{timestamp}</timestamp>
        <kind>{kind}</kind>
        <subject>{subject}</subject>
    </notification>"""


def signed(xml: str, public_key: str, private_key: str) -> tuple[bytes, dict[str, str]]:
    payload = encodebytes(xml.encode()).decode()
    signature = f"{public_key}|{Crypto.sha1_hmac_hash(private_key, payload)}"
    body = urlencode({"bt_signature": signature, "bt_payload": payload}).encode()
    return body, {"Content-Type": "application/x-www-form-urlencoded"}


def for_send_test(request: SampleRequest) -> Sample:
    public, _, private = request.secret("BRAINTREE_KEYS", "").partition(":")
    if not private:
        public, private = DEV_PUBLIC_KEY, DEV_PRIVATE_KEY
    xml = transaction_notification(
        "transaction_settled",
        order_id=str(request.invoice),
        amount=request.amount,
        currency=request.currency.upper(),
    )
    request.signed_with["BRAINTREE_KEYS"] = f"{public}:{private}"
    # Braintree's SDK needs a merchant id to parse anything: any will do to read it back.
    request.signed_with["BRAINTREE_MERCHANT_ID"] = request.env.get("BRAINTREE_MERCHANT_ID") or "dev"
    return Sample(
        f"transaction_settled, {request.amount} {request.currency.upper()}, "
        f"order {request.invoice}",
        *signed(xml, public, private),
    )


def dev_environment(sandbox: DevSandbox, env: Mapping[str, str]) -> dict[str, str]:
    return {
        "BRAINTREE_KEYS": exported_or(env, "BRAINTREE_KEYS", f"{DEV_PUBLIC_KEY}:{DEV_PRIVATE_KEY}"),
        "BRAINTREE_MERCHANT_ID": exported_or(env, "BRAINTREE_MERCHANT_ID", DEV_MERCHANT_ID),
        "BRAINTREE_ENVIRONMENT": exported_or(env, "BRAINTREE_ENVIRONMENT", "sandbox"),
        # Reconciliation's transaction search goes to the stand-in.
        "BRAINTREE_API_URL": sandbox.url,
    }
