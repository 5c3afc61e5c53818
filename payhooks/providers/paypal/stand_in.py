"""Local stand-ins for PayPal: the certificate host, the IPN postback, and the REST API's
token and webhook events list (for reconciliation).

A throw-away CA and a ``messageverificationcerts.sandbox.paypal.com`` leaf are made at
start-up; the chain is served as PayPal serves it, the CA is what the tests and
`payhooks dev` trust (PAYPAL_CERT_TRUST_FILE), and ``POST /_sandbox/paypal/sign`` signs a
message with the leaf's key, so send-test can sign like PayPal. ``POST /cgi-bin/webscr``
answers IPN postbacks: VERIFIED, or INVALID for transactions listed as invalid.

``POST /v1/oauth2/token`` issues a bearer token for the dev client id and secret (HTTP
Basic, ``grant_type=client_credentials``; 401 ``invalid_client`` otherwise), and ``GET
/v1/notifications/webhooks-events`` lists the events it holds as PayPal's reference
describes (Webhooks Management v1, "List event notifications"): ``start_time`` and
``end_time`` on ``create_time``, ``page_size`` (default 10), newest first, answered as
``{"events", "count", "links"}`` with ``next``/``previous`` links shaped like those of
PayPal's published example (``move_to``, ``index_time``, ``index_id``, ``&amp;`` between
parameters); 401 without a token it issued. Control: ``POST /_sandbox/paypal/events``
(``invoice``, ``amount``, optional ``currency``) adds a ``PAYMENT.CAPTURE.COMPLETED``
event no webhook delivered.
"""

from __future__ import annotations

import base64
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from urllib.parse import quote

from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from payhooks.providers.paypal.ipn_formats import ipn_fields

CERT_PATH = "/paypal/certs/messageverificationcerts.pem"
EVENTS_PATH = "/v1/notifications/webhooks-events"
# Not secrets: the REST app of `payhooks dev` and the tests.
CLIENT_ID = "payhooks-dev-only-paypal-client"
CLIENT_SECRET = "payhooks-dev-only-paypal-secret"  # noqa: S105


def _certificate(
    subject: str,
    key: rsa.RSAPrivateKey,
    issuer: str,
    issuer_key: rsa.RSAPrivateKey,
    *,
    ca: bool,
    days: int,
) -> x509.Certificate:
    now = datetime.now(tz=UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, subject)]))
        .issuer_name(x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, issuer)]))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=max(1, 10 - days)))  # days < 0: expired
        .not_valid_after(now + timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .sign(issuer_key, hashes.SHA256())
    )


@dataclass
class PayPalState:
    ca_key: rsa.RSAPrivateKey = field(
        default_factory=lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048)
    )
    leaf_key: rsa.RSAPrivateKey = field(
        default_factory=lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048)
    )
    leaf_days: int = 30
    invalid_txns: set[str] = field(default_factory=set)
    #: When not empty, only these bodies are VERIFIED: what "PayPal" really sent.
    genuine: set[bytes] = field(default_factory=set)
    postbacks: list[bytes] = field(default_factory=list)
    #: The webhook events PayPal keeps, as ``GET /v1/notifications/webhooks-events`` lists them.
    events: list[dict[str, Any]] = field(default_factory=list)
    #: Statuses the events list answers next, in order (200: as usual).
    list_faults: list[int] = field(default_factory=list)
    #: Each call to the REST API, as ``METHOD path?query``.
    requests: list[str] = field(default_factory=list)
    tokens: set[str] = field(default_factory=set)

    def clear_api(self) -> None:
        """Forget the REST API's events, faults, calls and tokens (the keys stay)."""
        self.events.clear()
        self.list_faults.clear()
        self.requests.clear()
        self.tokens.clear()

    def __post_init__(self) -> None:
        self.ca = _certificate(
            "Sandbox PayPal CA", self.ca_key, "Sandbox PayPal CA", self.ca_key, ca=True, days=365
        )
        self.leaf = _certificate(
            "messageverificationcerts.sandbox.paypal.com",
            self.leaf_key,
            "Sandbox PayPal CA",
            self.ca_key,
            ca=False,
            days=self.leaf_days,
        )

    @property
    def ca_pem(self) -> bytes:
        return self.ca.public_bytes(serialization.Encoding.PEM)

    @property
    def chain_pem(self) -> bytes:
        return self.leaf.public_bytes(serialization.Encoding.PEM) + self.ca_pem

    def sign(self, message: bytes) -> str:
        signature = self.leaf_key.sign(message, padding.PKCS1v15(), hashes.SHA256())
        return base64.b64encode(signature).decode()


PAYPAL_STATE = web.AppKey("paypal_state", PayPalState)


def capture_event(
    *, invoice_id: str, amount: Decimal, currency: str = "EUR", status: str = "COMPLETED"
) -> dict[str, Any]:
    """A ``PAYMENT.CAPTURE.<status>`` event, shaped like PayPal's (Orders v2 capture)."""
    now = datetime.now(tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "id": f"WH-{secrets.token_hex(8).upper()}",
        "event_version": "1.0",
        "create_time": now,
        "resource_type": "capture",
        "event_type": f"PAYMENT.CAPTURE.{status}",
        "summary": f"Payment {status.lower()}",
        "resource": {
            "id": secrets.token_hex(8).upper(),
            "status": status,
            "amount": {"currency_code": currency, "value": f"{amount:.2f}"},
            "final_capture": True,
            "invoice_id": invoice_id,
            "custom_id": "",
            "create_time": now,
            "update_time": now,
        },
    }


async def certs(request: web.Request) -> web.Response:
    return web.Response(body=request.app[PAYPAL_STATE].chain_pem, content_type="text/plain")


async def sign(request: web.Request) -> web.Response:
    message = (await request.json())["message"].encode()
    return web.json_response({"signature": request.app[PAYPAL_STATE].sign(message)})


async def ipn_postback(request: web.Request) -> web.Response:
    state = request.app[PAYPAL_STATE]
    body = await request.read()
    state.postbacks.append(body)
    if not body.startswith(b"cmd=_notify-validate&"):
        return web.Response(text="INVALID")
    original = body.removeprefix(b"cmd=_notify-validate&")
    txn_id = ipn_fields(original).get("txn_id", "")
    forged = bool(state.genuine) and original not in state.genuine
    return web.Response(text="INVALID" if txn_id in state.invalid_txns or forged else "VERIFIED")


async def issue_token(request: web.Request) -> web.Response:
    state = request.app[PAYPAL_STATE]
    state.requests.append(f"POST {request.path}")
    expected = base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
    form = await request.post()
    if request.headers.get("Authorization") != f"Basic {expected}":
        return web.json_response(
            {"error": "invalid_client", "error_description": "Client Authentication failed"},
            status=401,
        )
    if form.get("grant_type") != "client_credentials":
        return web.json_response(
            {"error": "unsupported_grant_type", "error_description": "Grant Type is NULL"},
            status=400,
        )
    token = f"A21AA{secrets.token_urlsafe(24)}"
    state.tokens.add(token)
    return web.json_response(
        {
            "scope": "https://uri.paypal.com/services/applications/webhooks",
            "access_token": token,
            "token_type": "Bearer",
            "app_id": "APP-80W284485P519543T",
            "expires_in": 32400,
            "nonce": f"{datetime.now(tz=UTC):%Y-%m-%dT%H:%M:%SZ}{secrets.token_hex(8)}",
        }
    )


def _instant(value: str) -> datetime:
    return datetime.fromisoformat(value)  # 3.11 reads a trailing Z


async def list_events(request: web.Request) -> web.Response:
    state = request.app[PAYPAL_STATE]
    state.requests.append(f"GET {request.path_qs}")
    status = state.list_faults.pop(0) if state.list_faults else 200
    if status == 429:
        return web.json_response(
            {
                "name": "RATE_LIMIT_REACHED",
                "message": "Too many requests. Blocked due to rate limiting.",
            },
            status=429,
        )
    if status != 200:
        return web.json_response({"name": "INTERNAL_SERVICE_ERROR"}, status=status)
    bearer = request.headers.get("Authorization", "").removeprefix("Bearer ")
    if bearer not in state.tokens:
        return web.json_response(
            {"error": "invalid_token", "error_description": "Token signature verification failed"},
            status=401,
        )
    query = request.query
    start, end = query.get("start_time"), query.get("end_time")
    size = int(query.get("page_size", "10"))
    offset = int(query.get("index_id", "0")) if query.get("move_to") else 0
    kept = [
        event
        for event in sorted(state.events, key=lambda e: e["create_time"], reverse=True)
        if (start is None or _instant(event["create_time"]) >= _instant(start))
        and (end is None or _instant(event["create_time"]) <= _instant(end))
    ]
    page = kept[offset : offset + size]
    links = []
    for rel, at in (("next", offset + size), ("previous", offset - size)):
        if 0 <= at < len(kept) and (rel == "next" or offset > 0):
            params = {
                **({"start_time": start} if start else {}),
                **({"end_time": end} if end else {}),
                "page_size": str(size),
                "move_to": rel,
                "index_time": page[-1 if rel == "next" else 0]["create_time"],
                "index_id": str(at),
            }
            joined = "&amp;".join(f"{k}={quote(v, safe=':')}" for k, v in params.items())
            links.append(
                {
                    "href": f"{request.url.origin()}{EVENTS_PATH}/?{joined}",
                    "rel": rel,
                    "method": "GET",
                }
            )
    return web.json_response({"events": page, "count": len(page), "links": links})


async def add_event(request: web.Request) -> web.Response:
    body = await request.json()
    event = capture_event(
        invoice_id=str(body["invoice"]),
        amount=Decimal(str(body["amount"])),
        currency=str(body.get("currency", "EUR")),
    )
    request.app[PAYPAL_STATE].events.append(event)
    return web.json_response(event)


def add_paypal_routes(app: web.Application, state: PayPalState | None = None) -> None:
    app[PAYPAL_STATE] = state or PayPalState()
    app.router.add_get(CERT_PATH, certs)
    app.router.add_post("/_sandbox/paypal/sign", sign)
    app.router.add_post("/cgi-bin/webscr", ipn_postback)
    app.router.add_post("/v1/oauth2/token", issue_token)
    app.router.add_get(EVENTS_PATH, list_events)
    app.router.add_get(EVENTS_PATH + "/", list_events)  # as PayPal's own next links write it
    app.router.add_post("/_sandbox/paypal/events", add_event)
