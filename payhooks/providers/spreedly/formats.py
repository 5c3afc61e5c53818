"""What Spreedly's callbacks and its transaction API say; pure, read alike by the receiver
(the signature, the hints) and the step (the API's record, which decides).

Signed requests (docs.spreedly.com/guides/offsite-payments/signed-requests/, and the same
page at developer.spreedly.com/docs/signed-requests): each ``<transaction>`` carries
``<signed>`` with ``<fields>`` (the signed fields' names, space-separated, in order),
``<algorithm>`` and ``<signature>``; the message is the fields' text joined with ``|`` (a
``nil="true"`` element is the empty string), and the signature its hex HMAC under the
environment's signing secret (never its access secret).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from xml.etree.ElementTree import Element

from defusedxml import ElementTree as SafeXml
from defusedxml.common import DefusedXmlException

from payhooks.domain.events import PaymentKind
from payhooks.domain.money import from_minor_units

NAME = "spreedly"
#: A callback larger than this is not parsed (Spreedly's carry a few transactions).
MAX_CALLBACK_BYTES = 256 * 1024
#: Spreedly publishes sha1; sha256 and sha512 are accepted should it move. Nothing weaker.
ALGORITHMS = {"sha1": hashlib.sha1, "sha256": hashlib.sha256, "sha512": hashlib.sha512}
#: A signature that leaves one of these out proves nothing we act on.
REQUIRED_FIELDS = frozenset(
    {"token", "state", "succeeded", "amount", "currency_code", "transaction_type"}
)

#: Transaction types that take money, and those that give it back.
PURCHASES = frozenset({"Purchase", "OffsitePurchase", "Capture"})
CREDITS = frozenset({"Credit", "GeneralCredit"})
SUCCEEDED = "succeeded"
FAILED_STATES = frozenset({"failed", "gateway_processing_failed", "gateway_setup_failed"})
PENDING_STATES = frozenset({"pending", "processing"})


class CallbackRefused(Exception):
    """The callback, or one of its transactions, is not what Spreedly signs."""


@dataclass(frozen=True, slots=True)
class SignedTransaction:
    """One transaction of a callback: the values of its signed fields (already verified
    against a secret by ``verify_transactions``)."""

    values: dict[str, str]

    @property
    def token(self) -> str:
        return self.values["token"]

    @property
    def state(self) -> str:
        return self.values["state"]

    @property
    def transaction_type(self) -> str:
        return self.values["transaction_type"]


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def parse_callback(body: bytes) -> list[Element]:
    """The ``<transaction>`` elements of a ``<transactions>`` callback, parsed safely (no
    DTD, no entities, bounded)."""
    if len(body) > MAX_CALLBACK_BYTES:
        raise CallbackRefused(f"callback larger than {MAX_CALLBACK_BYTES} bytes")
    try:
        root: Element = SafeXml.fromstring(body, forbid_dtd=True)
    except (SafeXml.ParseError, DefusedXmlException) as exc:
        raise CallbackRefused(f"not XML we read ({exc.__class__.__name__})") from None
    if _local(root.tag) != "transactions":
        raise CallbackRefused("the root element is not <transactions>")
    transactions = list(root)
    if not transactions or any(_local(t.tag) != "transaction" for t in transactions):
        raise CallbackRefused("<transactions> must hold <transaction> elements only")
    return transactions


def _only(parent: Element, name: str, where: str) -> Element | None:
    found = [child for child in parent if _local(child.tag) == name]
    if len(found) > 1:
        raise CallbackRefused(f"{where}: <{name}> appears {len(found)} times")
    return found[0] if found else None


def signed_values(transaction: Element, where: str) -> tuple[str, str, str, dict[str, str]]:
    """(algorithm, signature, message, values of the signed fields) of one transaction."""
    signed = _only(transaction, "signed", where)
    if signed is None:
        raise CallbackRefused(f"{where} is not signed")
    parts = {}
    for part in ("algorithm", "fields", "signature"):
        element = _only(signed, part, where)
        if element is None or not (element.text or "").strip():
            raise CallbackRefused(f"{where}: its <signed> has no <{part}>")
        parts[part] = (element.text or "").strip()
    algorithm = parts["algorithm"].lower()
    if algorithm not in ALGORITHMS:
        raise CallbackRefused(f"{where}: algorithm {algorithm[:20]!r} is not accepted")
    fields = parts["fields"].split()
    if len(set(fields)) != len(fields) or "signed" in fields:
        raise CallbackRefused(f"{where}: its signed field list repeats a field")
    missing = REQUIRED_FIELDS - set(fields)
    if missing:
        raise CallbackRefused(f"{where}: {', '.join(sorted(missing))} not signed")
    values = {}
    for field in fields:
        element = _only(transaction, field, where)
        if element is not None and len(element):
            raise CallbackRefused(f"{where}: signed field <{field}> is not a plain value")
        # Spreedly signs a nil element, or one it left out, as the empty string.
        values[field] = "" if element is None else (element.text or "")
    message = "|".join(values[field] for field in fields)
    return algorithm, parts["signature"].lower(), message, values


def signature_of(secret: str, algorithm: str, message: str) -> str:
    return hmac.new(secret.encode(), message.encode(), ALGORITHMS[algorithm]).hexdigest()


def verify_transactions(body: bytes, secrets: Iterable[str]) -> list[SignedTransaction]:
    """Every transaction of the callback, each verified on its own signed block; any that
    fails refuses the whole callback (nothing unsigned, nothing beside a forgery)."""
    keys = tuple(secrets)
    verified = []
    for index, transaction in enumerate(parse_callback(body), start=1):
        where = f"transaction {index}"
        algorithm, signature, message, values = signed_values(transaction, where)
        matched = False
        for key in keys:  # every key compared, constant-time, whatever matched before
            matched |= hmac.compare_digest(signature_of(key, algorithm, message), signature)
        if not matched:
            raise CallbackRefused(f"{where}: signature does not match")
        verified.append(SignedTransaction(values))
    return verified


def callback_time(value: str | None) -> datetime:
    """Spreedly's ``2021-04-07T20:35:11Z``; unreadable, the epoch (never believed)."""
    try:
        when = datetime.fromisoformat(str(value))  # 3.11 reads a trailing Z
    except ValueError:
        return datetime(1970, 1, 1, tzinfo=UTC)
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def kind_of(transaction_type: str, state: str, succeeded: bool) -> PaymentKind | None:
    """What a transaction of Spreedly's API means for money; None when it cannot be read.
    A credit not (yet) succeeded moved nothing: a failure, which writes nothing."""
    done = state == SUCCEEDED and succeeded
    if transaction_type in PURCHASES:
        if done:
            return PaymentKind.PAID
        if state in PENDING_STATES:
            return PaymentKind.PENDING
        return PaymentKind.FAILED if state in FAILED_STATES else None
    if transaction_type in CREDITS:
        if done:
            return PaymentKind.REFUNDED
        return PaymentKind.FAILED if state in FAILED_STATES | PENDING_STATES else None
    return None


def amount_of(record: dict[str, Any]) -> tuple[Decimal, str] | None:
    """The record's amount (integer minor units) in major units, and its currency."""
    amount, currency = record.get("amount"), record.get("currency_code")
    if not isinstance(amount, int) or isinstance(amount, bool) or amount < 0:
        return None
    if not isinstance(currency, str) or len(currency) != 3 or not currency.isalpha():
        return None
    return from_minor_units(amount, currency.upper()), currency.upper()
