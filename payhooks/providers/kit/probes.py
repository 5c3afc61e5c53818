"""What a provider's `check-config --probe` calls are: one read-only call per credential.

A provider's ``probe.py`` has ``checks(section, http) -> list[Check]``: nothing when its
credentials are not set; a result says what answered and how, never with a credential.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import httpx

from payhooks.settings import ProviderSettings, Settings

#: An id no provider has: a "not found" answer proves the credential was accepted.
PROBE_ID = "PM000PAYHOOKSPROBE"


@dataclass(frozen=True, slots=True)
class ProbeResult:
    target: str
    ok: bool
    detail: str
    #: Nothing to call: not a failure, not a success.
    skipped: bool = False
    #: The answer proves the credentials were accepted; else the service only answered
    #: (`reachable`), as ePay does whatever the merchant number and password.
    proven: bool = True

    @property
    def result(self) -> str:
        if self.skipped:
            return "skipped"
        if not self.ok:
            return "FAILED"
        return "ok" if self.proven else "reachable"


#: One read-only call: its target and what makes it.
Check = tuple[str, Callable[[], ProbeResult]]


def unknown_id_lookup(
    http: httpx.Client,
    target: str,
    url: str,
    headers: dict[str, str],
    *,
    accepted: str,
    refused: dict[int, str],
) -> ProbeResult:
    """Read an id nobody has: "not found" can only come once the credential was accepted."""
    answer = http.get(url, headers=headers)
    return by_status(target, answer, ok={200: accepted, 404: accepted}, refused=refused)


def by_status(
    target: str, answer: httpx.Response, *, ok: dict[int, str], refused: dict[int, str]
) -> ProbeResult:
    status = answer.status_code
    if status in ok:
        return ProbeResult(target, True, ok[status])
    return ProbeResult(target, False, refused.get(status, f"answered HTTP {status}"))


#: A provider's probe as `check-config --probe` calls it: with the whole settings.
Probe = Callable[[Settings, httpx.Client], list[Check]]

S = TypeVar("S", bound=ProviderSettings)


def probe_of(section: type[S], checks: Callable[[S, httpx.Client], list[Check]]) -> Probe:
    """The probe that calls ``checks`` with the provider's own section."""
    return lambda settings, http: checks(settings.provider(section), http)
