"""What `payhooks send-test` asks of a provider's sample, what the sample answers, and where
`payhooks dev` and the tests run the stand-ins a sample's dev variables point at.

Each provider's sample module has a ``for_send_test(request) -> Sample`` (named in its
table, payhooks/providers/tools.py), so ``send-test`` needs no list of them.
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
    #: Set for a provider with no webhook (EziDebit): the sandbox's answer to registering
    #: the payment its next poll finds. Nothing is sent to the receiver.
    registered: httpx.Response | None = field(default=None, repr=False)
    #: Its events' ids, for `trace`, where no receiver reads the sample (a polled one).
    event_ids: tuple[str, ...] = ()

    @property
    def method(self) -> str:
        return "POST" if self.query is None else "GET"


@dataclass(frozen=True, slots=True)
class DevSandbox:
    """Where `payhooks dev` and the tests run the providers' stand-ins.

    Each provider's sample module has a ``dev_environment(sandbox, env)`` (listed in
    payhooks/providers/tools.py): the variables that point the provider at its stand-in
    and sign with the dev secrets. A secret the user exported in ``env`` wins, so `payhooks dev` can try
    a real provider's signatures; where the worker calls an API, the stand-in always does.
    """

    url: str
    #: A directory for files a setting names (PayPal's trusted CA).
    data_dir: str
    #: The stand-ins' states the caller keeps, by stand-in name (``paypal``).
    states: Mapping[str, object] = field(default_factory=dict)


def exported_or(env: Mapping[str, str], variable: str, dev_value: str) -> str:
    """The user's value for ``variable``, or the dev one."""
    return env.get(variable) or dev_value
