"""Local stand-ins for the HTTP APIs payhooks talks to, for tests and `payhooks dev`.

The providers' stand-ins are listed in payhooks/providers/tools.py.
"""

from __future__ import annotations

from collections.abc import Mapping

from aiohttp import web

from payhooks.providers.tools import STAND_INS


def add_stand_ins(app: web.Application, states: Mapping[str, object]) -> None:
    """Serve every provider's stand-in from ``app``; ``states``, by stand-in, are those the
    caller reads (the others start empty)."""
    for name, add_routes in STAND_INS.items():
        add_routes(app, states.get(name))
