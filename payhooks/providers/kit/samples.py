"""What `payhooks send-test` asks of a provider's sample, and what the sample answers.

Each provider's sample module has a ``for_send_test(request) -> Sample`` (named in its
registry entry, ``payhooks/domain/providers.py``), so ``send-test`` needs no list of them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import httpx


@dataclass(frozen=True, slots=True)
class SampleRequest:
    invoice: int
    amount: Decimal
    currency: str
    #: Stripe only: the payment method type.
    method: str
    #: Operators' own systems only: the configured source it comes from.
    source: str
    #: Where configured secrets are read, so the receiver verifies what we sign.
    env: Mapping[str, str]
    sandbox_url: str
    #: What the sample was signed with, as settings variables: send-test reads the sample
    #: back with the receiver's own normaliser to print the event keys `trace` accepts.
    signed_with: dict[str, str] = field(default_factory=dict)

    def secret(self, variable: str, default: str) -> str:
        """The first of the variable's comma-separated values, or the dev default."""
        configured = [s.strip() for s in self.env.get(variable, "").split(",")]
        value = next((s for s in configured if s), default)
        self.signed_with[variable] = value
        return value

    def to_sandbox(self, path: str, payload: dict[str, Any]) -> httpx.Response:
        """Tell the dev sandbox's provider stand-in about the payment the job will read."""
        answer = httpx.post(
            f"{self.sandbox_url.rstrip('/')}/_sandbox/{path}", json=payload, timeout=10
        )
        answer.raise_for_status()
        return answer


@dataclass(frozen=True, slots=True)
class Sample:
    #: What the sample is, in a few words, for the command's output.
    summary: str
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    #: Set for providers that call back with a GET (ePay): sent as the query string.
    query: str | None = None
    #: Set for providers that sign nothing (Forte): the secret the URL ends with.
    url_token: str | None = field(default=None, repr=False)

    @property
    def method(self) -> str:
        return "POST" if self.query is None else "GET"
