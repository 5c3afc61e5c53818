"""What a provider's receiver supplies to the receiver (service/).

A provider's ``receiver.py`` implements ``WebhookProvider`` (built by its
``from_settings(settings)``) and is listed in payhooks/providers/receivers.py; the handler,
inbox, queue and worker stay as they are.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, ClassVar, Generic, Protocol, Self, TypeVar, cast

import orjson

from payhooks.domain.events import Normalised
from payhooks.providers.kit.receiver_errors import MalformedPayload
from payhooks.settings import ProviderSettings, Settings


class WebhookProvider(Protocol):
    name: str
    #: POST (the body is verified) or GET (the query string is: ePay).
    method: str
    #: Media types the provider sends; anything else is answered 415.
    content_types: frozenset[str]
    #: What the provider expects for a bad signature (GoCardless documents 498).
    bad_signature_status: int
    #: The answer to a verified request that held nothing to queue (GoCardless: 204).
    nothing_to_do_status: int

    #: The request headers kept with the body in the trail, to re-verify it later.
    signature_headers: tuple[str, ...]
    #: For a provider that signs nothing (Forte): secrets of ours, one of which its URL must
    #: end with (``/webhooks/<name>/<token>``); empty when the signature is the proof.
    url_tokens: tuple[str, ...]

    # Optional capabilities, None where a provider has none (ReceiverDefaults).

    @property
    def prepare(self) -> Callable[[Mapping[str, str]], Awaitable[None]] | None:
        """I/O its check needs before the synchronous ``verify`` (PayPal fetches its
        certificate), awaited by the handler so the event loop never blocks."""

    @property
    def answer_challenge(self) -> Callable[[str], str] | None:
        """The answer to Braintree's legacy endpoint check (``GET ?bt_challenge=``)."""

    def redact(self, body: bytes) -> bytes | None:
        """The body with card and bank details removed, or None when it holds none."""

    def verify(self, body: bytes, headers: Mapping[str, str]) -> None:
        """Raise ``InvalidSignature`` unless the raw body is authentic and fresh."""

    def normalise(self, body: bytes, headers: Mapping[str, str]) -> list[Normalised]:
        """Turn a verified body (and its headers) into events; pure (no I/O, no clock)."""


JSON = frozenset({"application/json"})
FORM = frozenset({"application/x-www-form-urlencoded"})


class ReceiverDefaults:
    """What most providers answer, for a receiver class to inherit: it states only what
    differs (its name, media types, signature headers, statuses). ``WebhookProvider`` is
    the contract; this is a convenience, not a second one."""

    method = "POST"
    content_types: frozenset[str] = JSON
    bad_signature_status = 400
    nothing_to_do_status = 200
    signature_headers: tuple[str, ...] = ()
    url_tokens: tuple[str, ...] = ()
    prepare: Callable[[Mapping[str, str]], Awaitable[None]] | None = None
    answer_challenge: Callable[[str], str] | None = None


S = TypeVar("S", bound=ProviderSettings)


class SectionReceiver(ReceiverDefaults, Generic[S]):
    """A receiver that needs only its settings section, as ``self._settings``: the receiver
    builds it for an enabled provider, so its secrets are there (and with none, no
    signature could match: it fails closed)."""

    SECTION: ClassVar[type[ProviderSettings]]

    def __init__(self, section: S, invoice_metadata_key: str = "nexudus_invoice_id") -> None:
        self._settings = section
        #: Where providers with metadata (Stripe, GoCardless) name the Nexudus invoice.
        self._invoice_metadata_key = invoice_metadata_key

    @classmethod
    def from_settings(cls, settings: Settings) -> Self:
        return cls(cast(S, settings.provider(cls.SECTION)), settings.invoice_metadata_key)


#: Fields that identify a card or a bank account (Stripe's names, and common ones).
SENSITIVE_FIELDS = frozenset(
    {
        "last4",
        "dynamic_last4",
        "fingerprint",
        "exp_month",
        "exp_year",
        "iin",
        "account_number",
        "routing_number",
        "sort_code",
        "iban",
        "bsb_number",
        "account_holder_name",
        "network_token",
        "mandate_reference",
        "iban_last4",
        "bic",
        "verified_name",
        "bank_code",
        "branch_code",
        "transit_number",
        "institution_number",
        "billing_details",
        "customer_details",
        # Forte's names (its transaction, customer and paymethod objects).
        "name_on_card",
        "last_4_account_number",
        "masked_account_number",
        "expire_month",
        "expire_year",
        "account_holder",
        "billing_address",
        "physical_address",
    }
)
# The lookahead says nothing new (every name starts so) but lets the engine leave most of
# a body's quotes at once rather than try each name there: a fifth less time per webhook.
_SENSITIVE_MARKER = re.compile(
    b'"(?=[a-z_])(?:[a-z_]*last4|'
    + b"|".join(re.escape(name.encode()) for name in sorted(SENSITIVE_FIELDS))
    + b')"'
)


def redact_json(body: bytes) -> bytes | None:
    """The JSON body with every sensitive field's value replaced, or None if it has none.

    A cheap byte search first: most payment events carry no card or bank details.
    """
    if _SENSITIVE_MARKER.search(body) is None:
        return None
    return json.dumps(_redact(json.loads(body))).encode()


def redact_json_fields(body: bytes, fields: frozenset[str]) -> bytes | None:
    """As ``redact_json``, for a provider whose card fields have other names (Spreedly's)."""
    data = json.loads(body)
    redacted = _redact(data, fields)
    return None if redacted == data else json.dumps(redacted).encode()


def _redact(value: Any, fields: frozenset[str] = SENSITIVE_FIELDS) -> Any:
    if isinstance(value, dict):
        return {
            k: "[redacted]"
            if (k in fields or k.endswith("last4")) and v is not None
            else _redact(v, fields)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_redact(v, fields) for v in value]
    return value


def load_json_object(body: bytes) -> dict[str, Any]:
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise MalformedPayload(f"body is not valid JSON: {exc.__class__.__name__}") from None
    if not isinstance(data, dict):
        raise MalformedPayload("body is not a JSON object")
    return data
