"""GoCardless sample webhooks, shaped like GoCardless's documented events, and signed."""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from payhooks.domain.money import to_minor_units
from payhooks.providers.gocardless.stand_in import ACCESS_TOKEN
from payhooks.providers.kit.samples import DevSandbox, Sample, SampleRequest, exported_or

# Not a secret: the webhook endpoint secret of `payhooks dev`, known to `send-test`.
DEV_WEBHOOK_SECRET = "payhooks_dev_only_gocardless_secret"  # noqa: S105


def event_id() -> str:
    return "EV" + secrets.token_hex(6).upper()


def payment_id() -> str:
    return "PM" + secrets.token_hex(6).upper()


def payment_event(
    payment: str,
    action: str = "confirmed",
    *,
    ev_id: str | None = None,
    resource_type: str = "payments",
) -> dict[str, Any]:
    links: dict[str, str] = {"payment": payment}
    if resource_type == "refunds":
        links["refund"] = "RF" + secrets.token_hex(6).upper()
    return {
        "id": ev_id or event_id(),
        "created_at": datetime.now(tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z",
        "resource_type": resource_type,
        "action": action,
        "links": links,
        "details": {
            "origin": "gocardless",
            "cause": f"payment_{action}",
            "description": f"Payment {action}.",
        },
        "metadata": {},
    }


def refund_event(refund: str, action: str = "created") -> dict[str, Any]:
    """A refund event as GoCardless documents it: it names the refund, not the payment
    (developer.gocardless.com/api-reference, Events, "refund created" example)."""
    return {
        "id": event_id(),
        "created_at": "2014-04-08T17:01:06.000Z",
        "resource_type": "refunds",
        "action": action,
        "details": {
            "origin": "api",
            "cause": "payment_refunded",
            "description": "The refund has been created, and will be submitted in the next batch.",
        },
        "metadata": {},
        "resource_metadata": {"order_dispatch_date": "2014-05-22"},
        "links": {"refund": refund},
    }


def other_event(resource_type: str, action: str) -> dict[str, Any]:
    singular = resource_type.rstrip("s")
    return {
        "id": event_id(),
        "created_at": datetime.now(tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z",
        "resource_type": resource_type,
        "action": action,
        "links": {singular: singular[:2].upper() + secrets.token_hex(6).upper()},
        "details": {"origin": "api", "cause": f"{singular}_{action}"},
        "metadata": {},
    }


def signed(events: list[dict[str, Any]], secret: str) -> tuple[bytes, dict[str, str]]:
    """(raw body, headers) as GoCardless sends a batch."""
    body = json.dumps(
        {"events": events, "meta": {"webhook_id": "WB" + secrets.token_hex(5).upper()}}
    ).encode()
    signature = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return body, {
        "Webhook-Signature": signature,
        "Content-Type": "application/json",
        "User-Agent": "gocardless-webhook-service/1.1",
    }


def for_send_test(request: SampleRequest) -> Sample:
    # The job reads the payment from the GoCardless API, so the sample payment is first
    # registered with the sandbox's GoCardless stand-in.
    payment = payment_id()
    request.to_sandbox(
        "gocardless/payments",
        {
            "id": payment,
            "amount": to_minor_units(request.amount, request.currency),
            "currency": request.currency,
            "invoice_id": request.invoice,
        },
    )
    sent = payment_event(payment, "confirmed")
    secret = request.secret("GOCARDLESS_WEBHOOK_SECRETS", DEV_WEBHOOK_SECRET)
    return Sample(
        f"payments/confirmed {sent['id']} for {payment}, {request.amount} "
        f"{request.currency.upper()}, invoice {request.invoice}",
        *signed([sent], secret),
    )


def dev_environment(sandbox: DevSandbox, env: Mapping[str, str]) -> dict[str, str]:
    return {
        "GOCARDLESS_WEBHOOK_SECRETS": exported_or(
            env, "GOCARDLESS_WEBHOOK_SECRETS", DEV_WEBHOOK_SECRET
        ),
        "GOCARDLESS_ACCESS_TOKEN": ACCESS_TOKEN,
        "GOCARDLESS_BASE_URL": sandbox.url,
    }
