"""Stripe's record of what happened: ``GET /v1/events``, the same Event objects (same ids)
as its webhooks, through the official SDK.

Filtered by ``created[gte]``/``created[lte]`` and by the types the receiver handles (at
most 20 per request, so in groups), newest first, paged with ``starting_after``. Event
ids are not ordered, so a page's position is the last event's id *and* its ``created``:
a resumed scan asks for ``created[lte]`` of that time, starting after that event. A
quick scan (``thorough`` False) adds ``delivery_success=false``, as Stripe's guide to
undelivered events does; a thorough one reads every event, since an event we answered
200 and then lost counts as delivered. Stripe keeps events 30 days.
"""

from __future__ import annotations

import json
from typing import Any

import stripe

from payhooks.domain.events import Normalised
from payhooks.providers.kit.listing import ListedPage, NotListed, RateLimited, Window
from payhooks.providers.kit.receiving import redact_json
from payhooks.providers.kit.step_errors import ProviderLookupError, ProviderLookupUnavailable
from payhooks.providers.stripe.receiver import (
    FAILED,
    PAID,
    PENDING,
    REFUND_OBJECT_EVENTS,
    REFUNDED,
    normalise_event,
)
from payhooks.providers.stripe.settings import StripeSettings
from payhooks.settings import Settings

PAGE_SIZE = 100  # Stripe's largest
MAX_TYPES = 20  # Stripe's limit on types[]

#: Every type the receiver turns into an event, in groups Stripe accepts.
HANDLED = sorted(
    PAID | PENDING | FAILED | REFUNDED | REFUND_OBJECT_EVENTS | {"charge.dispute.funds_reinstated"}
)
TYPE_GROUPS = tuple(tuple(HANDLED[n : n + MAX_TYPES]) for n in range(0, len(HANDLED), MAX_TYPES))


class StripeLister:
    name = "stripe"

    def __init__(self, section: StripeSettings, *, invoice_metadata_key: str) -> None:
        if not section.api_key:
            raise NotListed("STRIPE_API_KEY is not set (its events list needs it)")
        self._section = section
        self._api_key = section.api_key
        self._invoice_metadata_key = invoice_metadata_key

    @classmethod
    def from_settings(cls, settings: Settings) -> StripeLister:
        return cls(
            settings.provider(StripeSettings), invoice_metadata_key=settings.invoice_metadata_key
        )

    def fetch(self, window: Window, cursor: str | None, *, thorough: bool) -> ListedPage:
        at = json.loads(cursor) if cursor else {"group": 0}
        group = int(at["group"])
        params: dict[str, Any] = {
            "limit": PAGE_SIZE,
            "types": list(TYPE_GROUPS[group]),
            "created": {
                "gte": int(window.since.timestamp()),
                "lte": int(at.get("created", window.until.timestamp())),
            },
        }
        if at.get("after"):
            params["starting_after"] = at["after"]
        if not thorough:
            params["delivery_success"] = False
        answer = self._list(params)
        events: list[dict[str, Any]] = list(answer.get("data") or [])
        records = tuple(json.dumps(event, separators=(",", ":")).encode() for event in events)
        if events and answer.get("has_more"):
            last = events[-1]
            position = {"group": group, "created": int(last["created"]), "after": last["id"]}
            return ListedPage(records, json.dumps(position), more=True)
        more = group + 1 < len(TYPE_GROUPS)
        return ListedPage(records, json.dumps({"group": group + 1}), more=more)

    def redact(self, record: bytes) -> bytes | None:
        return redact_json(record)

    def normalise(self, record: bytes) -> list[Normalised]:
        return [
            normalise_event(
                json.loads(record),
                invoice_metadata_key=self._invoice_metadata_key,
                allow_test_mode=self._section.allow_test_mode,
            )
        ]

    def _list(self, params: dict[str, Any]) -> dict[str, Any]:
        client = stripe.StripeClient(
            self._api_key,
            base_addresses={"api": self._section.api_base} if self._section.api_base else None,
            max_network_retries=0,  # the scan waits on 429 itself, as Retry-After says
        )
        try:
            listing = client.v1.events.list(params=params)  # type: ignore[arg-type]
        except stripe.RateLimitError as exc:
            raise RateLimited(
                "Stripe answered 429", retry_after=_seconds(exc.headers, "Retry-After")
            ) from None
        except (stripe.AuthenticationError, stripe.PermissionError) as exc:
            raise ProviderLookupError(
                f"Stripe refused STRIPE_API_KEY ({exc.__class__.__name__}; a restricted key"
                " needs read access to Events)"
            ) from None
        except stripe.StripeError as exc:
            raise ProviderLookupUnavailable(
                f"Stripe's events list unavailable ({exc.__class__.__name__})"
            ) from None
        # The API's own JSON, as a webhook would carry each event (not the SDK's objects).
        data: Any = listing.last_response.data if listing.last_response else listing.to_dict()
        return dict(data)


def _seconds(headers: Any, name: str) -> float | None:
    try:
        value = float((headers or {}).get(name, ""))
    except (TypeError, ValueError):
        return None
    return value if 0 <= value <= 3600 else None
