"""The type of the ``make_client`` fixture (tests/conftest.py): the receiver over HTTP."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp.test_utils import TestClient

#: ``await make_client()`` is an aiohttp test client of the receiver built from the fixture's
#: settings; ``await make_client(other_settings)`` builds it from others.
MakeClient = Callable[..., Awaitable[TestClient]]
