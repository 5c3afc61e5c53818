"""PayPal's record of what happened: ``GET /v1/notifications/webhooks-events``, the same
event objects (same ``WH-…`` ids) its webhooks carry, read with the REST app's client
credentials (paypal/oauth.py).

Filtered by ``start_time``/``end_time`` (creation, both ends included), ``PAGE_SIZE`` a
page, and paged by the ``next`` HATEOAS link PayPal returns (``links``, ``rel: next``).
Only the link's query is taken, onto ``PAYPAL_API_BASE``'s own path, so the bearer token
goes nowhere else whatever the link names; its ``&amp;`` (HTML-escaped in PayPal's
published example) is read as ``&``. PayPal's API has no delivery-status filter (its
Events dashboard shows one, the list call takes only times, type, transaction id and page
size), so a quick scan and a thorough one read the same. PayPal keeps events about 30
days (the dashboard's range).
"""

from __future__ import annotations

import html
import json
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode, urlsplit

from payhooks.domain.events import Normalised
from payhooks.providers.kit.listing import (
    ListedPage,
    NotListed,
    Window,
    list_answer,
)
from payhooks.providers.kit.provider_api import ProviderApi
from payhooks.providers.kit.step_errors import ProviderLookupError
from payhooks.providers.paypal.oauth import CREDENTIALS, PayPalOAuth
from payhooks.providers.paypal.receiver import normalise_event
from payhooks.providers.paypal.settings import PayPalSettings
from payhooks.settings import Settings

LIST_PATH = "/v1/notifications/webhooks-events"
#: PayPal documents no largest page (its default is 10); 100 is what its callers use.
PAGE_SIZE = 100

API = ProviderApi("PayPal's webhook events list", credentials=CREDENTIALS)


class PayPalLister:
    name = "paypal"

    def __init__(self, section: PayPalSettings) -> None:
        if not (section.client_id and section.client_secret):
            raise NotListed(f"{CREDENTIALS} are not set (its webhook events list needs them)")
        self._section = section
        self._list_url = section.api_base.rstrip("/") + LIST_PATH
        self._oauth = PayPalOAuth(section.api_base, section.client_id, section.client_secret)

    @classmethod
    def from_settings(cls, settings: Settings) -> PayPalLister:
        return cls(settings.provider(PayPalSettings))

    def fetch(self, window: Window, cursor: str | None, *, thorough: bool) -> ListedPage:
        query = cursor or urlencode(
            {
                "start_time": _time(window.since),
                "end_time": _time(window.until),
                "page_size": PAGE_SIZE,
            }
        )
        answer = self._list(query)
        events = answer.get("events")
        found: list[Any] = events if isinstance(events, list) else []
        records = tuple(json.dumps(event, separators=(",", ":")).encode() for event in found)
        after = next_query(answer.get("links"))
        # An empty page, or a link back to this one, ends the scan: it never loops.
        if found and after is not None and after != query:
            return ListedPage(records, after, more=True)
        return ListedPage(records, query, more=False)

    def redact(self, record: bytes) -> bytes | None:
        return None  # as the receiver: PayPal's events carry no card or bank details

    def normalise(self, record: bytes) -> list[Normalised]:
        return normalise_event(record, provider_value=self._section.provider_value)

    def _list(self, query: str) -> dict[str, Any]:
        try:
            response = API.send(
                "GET",
                f"{self._list_url}?{query}",
                headers={**self._oauth.authorization(), "Accept": "application/json"},
            )
        except ProviderLookupError:
            self._oauth.forget()  # the next run asks for a new token
            raise
        return list_answer(response, API.display_name)


def next_query(links: Any) -> str | None:
    """The query of the ``next`` link, unescaped; None when there is none."""
    for link in links if isinstance(links, list) else []:
        if isinstance(link, dict) and link.get("rel") == "next" and link.get("href"):
            href = str(link["href"])
            while (unescaped := html.unescape(href)) != href:  # "&amp;amp;" in the SDK's copy
                href = unescaped
            return urlsplit(href).query or None
    return None


def _time(at: datetime) -> str:
    """RFC 3339, as PayPal's reference writes its examples (UTC, Z)."""
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
