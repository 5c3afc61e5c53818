"""A signature header with non-ASCII bytes is a 400 that queues nothing, never a 500.

Both Stripe's SDK and our Authorize.Net check compare with ``hmac.compare_digest``, which
raises TypeError on non-ASCII text; aiohttp hands such header bytes over as text (UTF-8,
invalid bytes as surrogates). Sent over HTTP, as a provider or an attacker would.
"""

from __future__ import annotations

import asyncio
import json
from decimal import Decimal
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from rq import Queue

from payhooks.providers.authorizenet.receiver import signature_of
from payhooks.providers.stripe import sample as stripe_samples
from tests.support.settings import AUTHORIZENET_KEY, STRIPE_SECRET


def stripe_request() -> tuple[str, bytes, str, str]:
    intent = stripe_samples.payment_intent(invoice_id=42, amount=Decimal("100.00"))
    body, headers = stripe_samples.signed(
        stripe_samples.event("payment_intent.succeeded", intent), STRIPE_SECRET
    )
    return "/webhooks/stripe", body, "Stripe-Signature", headers["Stripe-Signature"]


def authorizenet_request() -> tuple[str, bytes, str, str]:
    # Shaped like the signed example in stymiee/authnetjson's tests (see test_authorizenet).
    body = json.dumps(
        {
            "notificationId": "182cbbff-cab2-4080-931d-80e5d818f23a",
            "eventType": "net.authorize.payment.authcapture.created",
            "eventDate": "2017-08-18T20:40:52.7722007Z",
            "webhookId": "849eb87e-078a-4169-a34b-c0bded5019a8",
            "payload": {"responseCode": 0, "entityName": "transaction", "id": "40005915599"},
        }
    ).encode()
    signature = "sha512=" + signature_of(AUTHORIZENET_KEY, body).upper()
    return "/webhooks/authorizenet", body, "X-ANET-Signature", signature


REQUESTS = {"stripe": stripe_request, "authorizenet": authorizenet_request}


@pytest.mark.parametrize("make", REQUESTS.values(), ids=REQUESTS.keys())
@pytest.mark.parametrize(
    "spoil",
    [
        lambda good: good + "\u00e9",  # a UTF-8 é after a valid signature
        lambda good: good[:-1] + "\u00e9",  # in place of its last character
        lambda good: "\u00e9" + good,
        # stripe-python tests/test_webhook.py (test_header_contains_valid_signature): a
        # valid header followed by another v1 entry; here that entry is not ASCII.
        lambda good: good + ",v1=\u00e9",
    ],
    ids=["appended", "replacing", "prefixed", "extra-entry"],
)
async def test_non_ascii_signature_header_is_400(
    client: TestClient, queue: Queue, make: Any, spoil: Any
) -> None:
    path, body, header, good = make()
    response = await client.post(
        path, data=body, headers={header: spoil(good), "Content-Type": "application/json"}
    )
    answer = await response.json()
    assert response.status == 400
    assert answer["error"] == "invalid_signature"
    assert "non-ASCII" in answer["reason"]
    assert queue.count == 0
    # The same body with its genuine header is still accepted afterwards.
    response = await client.post(
        path, data=body, headers={header: good, "Content-Type": "application/json"}
    )
    assert response.status == 200


@pytest.mark.parametrize("make", REQUESTS.values(), ids=REQUESTS.keys())
async def test_raw_non_utf8_byte_in_the_header_is_400(
    client: TestClient, queue: Queue, make: Any
) -> None:
    # Bytes that are not UTF-8, written to the socket by hand. aiohttp's parser refuses
    # these itself today; this holds the answer at 400 should that ever change.
    path, body, header, good = make()
    reader, writer = await asyncio.open_connection(client.host, client.port)
    writer.write(
        f"POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n".encode()
        + header.encode()
        + b": "
        + good.encode()[:-2]
        + b"\xff\xfe\r\n\r\n"
        + body
    )
    await writer.drain()
    status_line = await reader.readline()
    writer.close()
    await writer.wait_closed()
    assert status_line.split()[1] == b"400"
    assert queue.count == 0
