"""Provider API calls: one classification of failures, over HTTP on loopback."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from aiohttp import web

from payhooks.devtools.sandbox.server import ThreadedServer
from payhooks.providers.kit.provider_api import ProviderApi
from workers.errors import ProviderLookupError, ProviderLookupUnavailable


async def answer(request: web.Request) -> web.Response:
    headers = (
        {"Retry-After": request.query["retry_after"]} if "retry_after" in request.query else {}
    )
    return web.Response(status=int(request.match_info["status"]), headers=headers)


@pytest.fixture(scope="module")
def server() -> Iterator[ThreadedServer]:
    def make() -> web.Application:
        app = web.Application()
        app.router.add_get("/status/{status}", answer)
        return app

    running = ThreadedServer(make).start()
    yield running
    running.stop()


def test_refused_credentials_are_permanent_and_named(server: ThreadedServer) -> None:
    api = ProviderApi("Forte's API", credentials="FORTE_API_ACCESS_ID and FORTE_API_SECURE_KEY")
    with pytest.raises(
        ProviderLookupError, match="refused our credentials \\(401\\): check FORTE_"
    ):
        api.send("GET", f"{server.url}/status/401")


def test_a_401_or_403_from_an_api_without_credentials_is_retried(server: ThreadedServer) -> None:
    # PayPal's IPN postback takes none: a 403 there is a firewall's, not a verdict on us.
    api = ProviderApi("PayPal's IPN check", credentials=None)
    for status in (401, 403):
        with pytest.raises(ProviderLookupUnavailable, match=f"answered {status}"):
            api.send("GET", f"{server.url}/status/{status}")


@pytest.mark.parametrize(
    ("retry_after", "taken"), [("30", 30.0), ("inf", None), ("1e7", None), ("-5", None)]
)
def test_retry_after_is_taken_only_within_an_hour(
    server: ThreadedServer, retry_after: str, taken: float | None
) -> None:
    api = ProviderApi("Forte's API", credentials="FORTE_API_SECURE_KEY")
    with pytest.raises(ProviderLookupUnavailable) as raised:
        api.send("GET", f"{server.url}/status/429?retry_after={retry_after}")
    assert raised.value.retry_after == taken


def test_other_answers_are_the_callers_to_read(server: ThreadedServer) -> None:
    api = ProviderApi("Forte's API", credentials="FORTE_API_SECURE_KEY")
    assert api.send("GET", f"{server.url}/status/404").status_code == 404
