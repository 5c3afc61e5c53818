"""PayPal REST webhooks, verified offline.

PayPal signs ``transmission_id|transmission_time|webhook_id|crc32(body)`` with RSA-SHA256
(``PAYPAL-AUTH-ALGO: SHA256withRSA``) and says where its certificate is
(``PAYPAL-CERT-URL``). The certificate is fetched only from an allow-listed PayPal address,
its chain and validity are checked against trusted roots with ``cryptography``, and it is
cached. (``paypalrestsdk``'s verify is broken with current pyOpenSSL.) Fetching happens in
``prepare``, before the synchronous ``verify``, so the event loop never blocks.
"""

from __future__ import annotations

import base64
import binascii
import itertools
import time
import zlib
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import certifi
from cryptography import x509
from cryptography.exceptions import InvalidSignature as BadSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from payhooks.domain.events import (
    Ignored,
    InvoiceRef,
    Normalised,
    PaymentEvent,
    PaymentKind,
    RegularPaymentProvider,
)
from payhooks.domain.money import finite_amount
from payhooks.providers.kit.receiver_errors import InvalidSignature, MalformedPayload, WebhookError
from payhooks.providers.kit.receiving import ReceiverDefaults, load_json_object
from payhooks.providers.paypal.settings import PayPalSettings
from payhooks.settings import Settings

KINDS = {
    "COMPLETED": PaymentKind.PAID,
    "PENDING": PaymentKind.PENDING,
    "DENIED": PaymentKind.FAILED,
    "DECLINED": PaymentKind.FAILED,
    "REFUNDED": PaymentKind.REFUNDED,
    "REVERSED": PaymentKind.REFUNDED,
}
SIGNER_NAMES = frozenset(
    {"messageverificationcerts.paypal.com", "messageverificationcerts.sandbox.paypal.com"}
)
CACHE_SECONDS = 3600
NAME = "paypal"
MAX_CACHED_CERTIFICATES = 32


class CertificateUnavailable(WebhookError):
    """PayPal's certificate could not be fetched: PayPal should retry, so 503."""

    status = 503
    code = "certificate_unavailable"


def signed_message(headers: Mapping[str, str], webhook_id: str, body: bytes) -> bytes:
    transmission_id = headers.get("PAYPAL-TRANSMISSION-ID", "")
    transmission_time = headers.get("PAYPAL-TRANSMISSION-TIME", "")
    return f"{transmission_id}|{transmission_time}|{webhook_id}|{zlib.crc32(body)}".encode()


class PayPalWebhook(ReceiverDefaults):
    name = NAME
    signature_headers: tuple[str, ...] = (
        "PAYPAL-TRANSMISSION-ID",
        "PAYPAL-TRANSMISSION-TIME",
        "PAYPAL-TRANSMISSION-SIG",
        "PAYPAL-CERT-URL",
        "PAYPAL-AUTH-ALGO",
    )

    @classmethod
    def from_settings(cls, settings: Settings) -> PayPalWebhook:
        section = settings.provider(PayPalSettings)
        return cls(
            section.webhook_ids,
            cert_url_prefixes=section.cert_url_prefixes,
            trust_file=section.cert_trust_file or certifi.where(),
            provider_value=section.provider_value,
        )

    def __init__(
        self,
        webhook_ids: tuple[str, ...],
        *,
        cert_url_prefixes: tuple[str, ...],
        trust_file: str,
        provider_value: int | None,
    ) -> None:
        if not webhook_ids:
            raise ValueError("at least one PayPal webhook id is required")
        self._webhook_ids = webhook_ids
        self._prefixes = cert_url_prefixes
        with open(trust_file, "rb") as roots:
            self._roots = x509.load_pem_x509_certificates(roots.read())
        self._provider_value = provider_value
        self._certs: dict[str, tuple[float, x509.Certificate]] = {}

    def redact(self, body: bytes) -> bytes | None:
        return None  # PayPal events carry no card or bank details

    async def prepare(self, headers: Mapping[str, str]) -> None:
        """Fetch (once) and check the signing certificate named by PAYPAL-CERT-URL."""
        url = headers.get("PAYPAL-CERT-URL", "")
        if not url:
            raise InvalidSignature("missing PAYPAL-CERT-URL header")
        if not all(headers.get(h) for h in self.signature_headers if h != "PAYPAL-AUTH-ALGO"):
            raise InvalidSignature("missing PayPal transmission headers")  # before any fetch
        if "?" in url or "#" in url or not any(url.startswith(p) for p in self._prefixes):
            raise InvalidSignature("PAYPAL-CERT-URL is not a PayPal certificate address")
        now = time.monotonic()
        cached = self._certs.get(url)
        if cached is not None and cached[0] > now:
            return
        # Bounded: expired entries go, and there are only ever a few PayPal certificates.
        self._certs = {u: c for u, c in self._certs.items() if c[0] > now}
        if len(self._certs) >= MAX_CACHED_CERTIFICATES:
            self._certs.clear()
        try:
            async with (
                aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session,
                session.get(url, allow_redirects=False) as response,
            ):
                if response.status != 200:
                    raise CertificateUnavailable(f"certificate host answered {response.status}")
                pem = await response.read()
        except (aiohttp.ClientError, TimeoutError):
            raise CertificateUnavailable("PayPal's certificate could not be fetched") from None
        self._certs[url] = (time.monotonic() + CACHE_SECONDS, self._checked_leaf(pem))

    def _checked_leaf(self, pem: bytes) -> x509.Certificate:
        try:
            chain = x509.load_pem_x509_certificates(pem)
        except ValueError:
            raise InvalidSignature("PAYPAL-CERT-URL did not give a certificate") from None
        now = datetime.now(tz=UTC)
        for cert in chain:
            if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
                raise InvalidSignature("PayPal's certificate chain has an expired certificate")
        for issuer in chain[1:]:
            if not _is_ca(issuer):
                raise InvalidSignature("PayPal's certificate chain has a non-CA issuer")
        try:
            for child, parent in itertools.pairwise(chain):
                child.verify_directly_issued_by(parent)
            last = chain[-1]
            if not any(last == root or _issued(last, root) for root in self._roots):
                raise InvalidSignature("PayPal's certificate chain ends in an untrusted root")
        except (ValueError, TypeError, BadSignature):
            raise InvalidSignature("PayPal's certificate chain does not verify") from None
        leaf = chain[0]
        names = {a.value for a in leaf.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)}
        if not names & SIGNER_NAMES:
            raise InvalidSignature("the certificate is not PayPal's message-signing certificate")
        return leaf

    def verify(self, body: bytes, headers: Mapping[str, str]) -> None:
        cached = self._certs.get(headers.get("PAYPAL-CERT-URL", ""))
        if cached is None:
            raise InvalidSignature("no verified PayPal certificate for this request")
        if cached[1].not_valid_after_utc < datetime.now(tz=UTC):
            raise InvalidSignature("PayPal's certificate has expired")
        if headers.get("PAYPAL-AUTH-ALGO", "SHA256withRSA") != "SHA256withRSA":
            raise InvalidSignature("unsupported PAYPAL-AUTH-ALGO")
        try:
            signature = base64.b64decode(headers.get("PAYPAL-TRANSMISSION-SIG", ""), validate=True)
        except binascii.Error:
            raise InvalidSignature("malformed PAYPAL-TRANSMISSION-SIG") from None
        key = cached[1].public_key()
        if not isinstance(key, rsa.RSAPublicKey):
            raise InvalidSignature("PayPal's certificate holds no RSA key")
        for webhook_id in self._webhook_ids:
            try:
                key.verify(
                    signature,
                    signed_message(headers, webhook_id, body),
                    padding.PKCS1v15(),
                    hashes.SHA256(),
                )
                return
            except BadSignature:
                continue
        raise InvalidSignature("signature does not match")

    def normalise(self, body: bytes, headers: Mapping[str, str]) -> list[Normalised]:
        return normalise_event(body, provider_value=self._provider_value)


def normalise_event(body: bytes, *, provider_value: int | None) -> list[Normalised]:
    """A PayPal event's payment, read alike from a webhook and from PayPal's list of events
    (the lister: the same event object, the same id); pure."""
    event = load_json_object(body)
    event_id, event_type = event.get("id"), event.get("event_type")
    resource = event.get("resource")
    if not isinstance(event_id, str) or not isinstance(event_type, str):
        raise MalformedPayload("PayPal event without id or event_type")
    if not isinstance(resource, dict):
        raise MalformedPayload("PayPal event without resource")
    family, _, status = event_type.removeprefix("PAYMENT.").partition(".")
    kind = KINDS.get(status) if event_type.startswith("PAYMENT.") else None
    if kind is None or family not in ("CAPTURE", "SALE"):
        return [Ignored(event_id, event_type, "event type not handled")]
    return [_payment(event, resource, event_id, event_type, kind, family == "SALE", provider_value)]


def _payment(
    event: dict[str, Any],
    resource: dict[str, Any],
    event_id: str,
    event_type: str,
    kind: PaymentKind,
    sale: bool,
    provider_value: int | None,
) -> Normalised:
    if sale:
        reference = resource.get("invoice_number") or resource.get("custom")
        value, currency = _money(resource, "total", "currency")
        subscription = resource.get("billing_agreement_id")
    else:
        reference = resource.get("invoice_id") or resource.get("custom_id")
        value, currency = _money(resource, "value", "currency_code")
        subscription = None
    invoice = InvoiceRef.from_text(str(reference or ""))
    if not invoice and kind in (PaymentKind.PAID, PaymentKind.PENDING):
        return Ignored(event_id, event_type, "no invoice_id / custom_id on the payment")
    amount = finite_amount(value)
    token = str(resource.get("id"))
    if kind is PaymentKind.REFUNDED:
        # The resource is the refund; the token is the payment it undoes.
        undone = _refunded_payment(resource, sale)
        if undone is None:
            # Money left and we cannot tell whose payment it was (PayPal's simulator
            # sends PAYMENT.SALE.REVERSED with only the refund's `self` link). The job
            # does not look it up at PayPal (its client credentials, when set, serve
            # reconciliation only): kept, listed and alerted on as unprocessed for a
            # person, never acknowledged and forgotten.
            raise MalformedPayload(
                f"PayPal {event_type}: the refund names no capture or sale (no sale_id, "
                "`up` or `sale` link), so the payment it undoes is unknown; find it in "
                "PayPal's dashboard by the refund's id"
            )
        token = undone
        # v1 sale refunds state their total as a negative number: what left, positive.
        amount = abs(amount) if amount is not None else None
    elif amount is not None and amount < 0:
        return Ignored(event_id, event_type, "a negative amount is not a payment")
    elif kind is PaymentKind.PAID and (amount is None or not currency):
        # A payment whose amount we cannot read is a body we cannot read: kept for a
        # person and a replay once fixed, not a job bound to fail AmountMismatch.
        raise MalformedPayload(f"PayPal {event_type} without a readable amount and currency")
    provider = provider_value or (5 if subscription else 6)
    try:
        when = datetime.fromisoformat(str(resource.get("create_time") or event.get("create_time")))
    except ValueError:
        when = datetime.fromtimestamp(0, tz=UTC)
    return PaymentEvent(
        provider=NAME,
        event_id=event_id,
        event_type=event_type,
        kind=kind,
        token=token,
        invoice=invoice,
        amount=amount,
        currency=str(currency).upper() if currency else None,
        occurred_at=when,
        object_id=str(resource.get("id")),
        regular_payment_provider=RegularPaymentProvider(provider),
        payment_method="paypal",
        details={"billing_agreement": str(subscription)} if subscription else {},
    )


def _money(resource: dict[str, Any], value_key: str, currency_key: str) -> tuple[Any, Any]:
    money = resource.get("amount")
    if not isinstance(money, dict):
        return None, None
    return money.get(value_key), money.get(currency_key)


def _refunded_payment(resource: dict[str, Any], sale: bool) -> str | None:
    """The capture (v2: the ``up`` link) or sale (v1: ``sale_id``, or the ``sale`` link)."""
    if sale and isinstance(resource.get("sale_id"), str) and resource["sale_id"]:
        return str(resource["sale_id"])
    wanted = ("sale", "/v1/payments/sale/") if sale else ("up", "/v2/payments/captures/")
    links = resource.get("links")
    for link in links if isinstance(links, list) else []:
        if not isinstance(link, dict) or link.get("rel") != wanted[0]:
            continue
        path = urlsplit(str(link.get("href", ""))).path
        if wanted[1] in path:
            found = path.rsplit("/", 1)[-1]
            return found or None
    return None


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


def _issued(cert: x509.Certificate, root: x509.Certificate) -> bool:
    if cert.issuer != root.subject or not _is_ca(root):
        return False
    try:
        cert.verify_directly_issued_by(root)
    except (ValueError, TypeError, BadSignature):
        return False
    return True
