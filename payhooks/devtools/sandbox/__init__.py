"""Local stand-ins for the HTTP APIs payhooks talks to, for tests and `payhooks dev`.

The providers' stand-ins are named in the registry (``payhooks/domain/providers.py``): each is
a state class, made with no arguments, whose ``add_routes(app)`` serves it from the sandbox.
"""

from __future__ import annotations

from typing import Protocol

from aiohttp import web

from payhooks.domain.providers import load, stand_ins


class StandIn(Protocol):
    def add_routes(self, app: web.Application) -> None: ...


def make_stand_ins(**made: StandIn) -> dict[str, StandIn]:
    """Every provider's stand-in, by its module's name; ``made`` are ones the caller reads."""
    return {name: made.get(name) or load(path)() for name, path in stand_ins().items()}
