"""`payhooks send-test`: post a correctly signed sample webhook to a running receiver."""

from __future__ import annotations

import argparse
import os
from decimal import Decimal, InvalidOperation

import httpx

from payhooks.samples import stripe as stripe_samples


def send_test(args: argparse.Namespace) -> int:
    try:
        amount = Decimal(args.amount)
    except InvalidOperation:
        print(f"--amount must be a number such as 100.00, got {args.amount!r}")
        return 2
    secrets = [s.strip() for s in os.environ.get("STRIPE_WEBHOOK_SECRETS", "").split(",")]
    secret = next((s for s in secrets if s), stripe_samples.DEV_WEBHOOK_SECRET)
    intent = stripe_samples.payment_intent(
        invoice_id=args.invoice, amount=amount, currency=args.currency, method=args.method
    )
    event = stripe_samples.event("payment_intent.succeeded", intent)
    body, headers = stripe_samples.signed(event, secret)
    url = f"{args.url.rstrip('/')}/webhooks/stripe"
    try:
        response = httpx.post(url, content=body, headers=headers, timeout=10)
    except httpx.HTTPError as exc:
        print(f"could not reach {url}: {exc.__class__.__name__}; is `payhooks dev` running?")
        return 1
    print(
        f"POST {url} ({event['type']} {event['id']}, {amount} {args.currency.upper()}, "
        f"invoice {args.invoice}) -> {response.status_code} {response.text}"
    )
    return 0 if response.is_success else 1
