"""Queueing events as the receiver does, and reading the Nexudus sandbox's call log."""

from __future__ import annotations

import json
from typing import Any

from payhooks.devtools.samples.deliver import deliver_bodies
from payhooks.devtools.sandbox.nexudus import SandboxState
from payhooks.settings import Settings
from service.inbox import Accepted


def deliver(settings: Settings, *events: dict[str, Any]) -> list[Accepted]:
    """Queue Stripe events exactly as the receiver does after verifying them."""
    return deliver_bodies(settings, "stripe", [json.dumps(e).encode() for e in events])


def api_calls(state: SandboxState) -> list[tuple[str, str, int]]:
    return [(c.method, c.path, c.status) for c in state.calls]


def writes(state: SandboxState, method: str | None = None) -> list[tuple[str, str, int]]:
    return [
        (c.method, c.path, c.status)
        for c in state.calls
        if c.write and c.status == 200 and (method is None or c.method == method)
    ]
