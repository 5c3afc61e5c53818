"""Local stand-ins for PayPal: the certificate host and the IPN postback.

A throw-away CA and a ``messageverificationcerts.sandbox.paypal.com`` leaf are made at
start-up; the chain is served as PayPal serves it, the CA is what the tests and
`payhooks dev` trust (PAYPAL_CERT_TRUST_FILE), and ``POST /_sandbox/paypal/sign`` signs a
message with the leaf's key, so send-test can sign like PayPal. ``POST /cgi-bin/webscr``
answers IPN postbacks: VERIFIED, or INVALID for transactions listed as invalid.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from payhooks.providers.paypal.ipn_formats import ipn_fields

CERT_PATH = "/paypal/certs/messageverificationcerts.pem"


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


def add_paypal_routes(app: web.Application, state: PayPalState | None = None) -> None:
    app[PAYPAL_STATE] = state or PayPalState()
    app.router.add_get(CERT_PATH, certs)
    app.router.add_post("/_sandbox/paypal/sign", sign)
    app.router.add_post("/cgi-bin/webscr", ipn_postback)
