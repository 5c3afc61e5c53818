"""What a provider module supplies to the receiver.

Adding a provider means adding one module that implements ``WebhookProvider`` and
registering it in ``service.providers.build_providers``; the handler, inbox, queue and
worker stay as they are.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Protocol

from payhooks.events import Normalised
from service.errors import MalformedPayload


class WebhookProvider(Protocol):
    name: str
    #: Media types the provider sends; anything else is answered 415.
    content_types: frozenset[str]
    #: What the provider expects for a bad signature (GoCardless documents 498).
    bad_signature_status: int
    #: The answer to a verified request that held nothing to queue (GoCardless: 204).
    nothing_to_do_status: int

    def verify(self, body: bytes, headers: Mapping[str, str]) -> None:
        """Raise ``InvalidSignature`` unless the raw body is authentic and fresh."""

    def normalise(self, body: bytes) -> list[Normalised]:
        """Turn a verified body into events; pure (no I/O, no clock)."""


def load_json_object(body: bytes) -> dict[str, Any]:
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MalformedPayload(f"body is not valid JSON: {exc.__class__.__name__}") from None
    if not isinstance(data, dict):
        raise MalformedPayload("body is not a JSON object")
    return data
