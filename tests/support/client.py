"""The receiver over HTTP: the type of the ``make_client`` fixture, and posting a webhook."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from aiohttp.test_utils import TestClient

#: ``await make_client()`` is an aiohttp test client of the receiver built from the fixture's
#: settings; ``await make_client(other_settings)`` builds it from others.
MakeClient = Callable[..., Awaitable[TestClient]]


async def post_webhook(
    client: TestClient, provider: str, body: bytes, headers: Mapping[str, str]
) -> tuple[int, Any]:
    """POST to /webhooks/<provider> (a registry name, or ``generic/<source>``) as the provider
    would: the status and the JSON answer (None for a 204, which has no body)."""
    response = await client.post(f"/webhooks/{provider}", data=body, headers=dict(headers))
    return response.status, await response.json() if response.status != 204 else None
