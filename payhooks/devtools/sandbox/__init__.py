"""Local stand-ins for the HTTP APIs payhooks talks to, for tests and `payhooks dev`.

The providers' stand-ins are named in the registry (``payhooks/domain/providers.py``).
"""

from __future__ import annotations

from collections.abc import Mapping

from aiohttp import web

from payhooks.domain.providers import load, stand_ins


def add_stand_ins(app: web.Application, states: Mapping[str, object]) -> None:
    """Serve every provider's stand-in from ``app``; ``states``, by stand-in, are those the
    caller reads (the others start empty)."""
    for name, path in stand_ins().items():
        load(path)(app, states.get(name))
