"""GoCardless's record of what happened: ``GET /events``, the same events (same ``EV…``
ids) its webhooks batch, through the official ``gocardless-pro`` client.

Filtered by ``created_at[gte]``/``created_at[lte]`` and by resource type, payments first,
then refunds (money going back is as much a payment event as money coming in), and
paged with the ``after`` cursor GoCardless returns. GoCardless records delivery per
webhook, not per event, so a quick scan and a thorough one read the same.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from gocardless_pro import errors

from payhooks.domain.events import Normalised
from payhooks.providers.gocardless.receiver import normalise_event
from payhooks.providers.gocardless.settings import GoCardlessSettings
from payhooks.providers.gocardless.step import REFUSED, UNAVAILABLE, client_for
from payhooks.providers.kit.listing import ListedPage, NotListed, RateLimited, Window
from payhooks.providers.kit.receiving import redact_json
from payhooks.providers.kit.step_errors import ProviderLookupError, ProviderLookupUnavailable
from payhooks.settings import Settings

PAGE_SIZE = 500  # GoCardless's largest
RESOURCE_TYPES = ("payments", "refunds")


class GoCardlessLister:
    name = "gocardless"

    def __init__(self, section: GoCardlessSettings, *, invoice_metadata_key: str) -> None:
        if not section.access_token:
            raise NotListed("GOCARDLESS_ACCESS_TOKEN is not set (its events list needs it)")
        self._section = section
        self._access_token = section.access_token
        self._invoice_metadata_key = invoice_metadata_key

    @classmethod
    def from_settings(cls, settings: Settings) -> GoCardlessLister:
        return cls(
            settings.provider(GoCardlessSettings),
            invoice_metadata_key=settings.invoice_metadata_key,
        )

    def fetch(self, window: Window, cursor: str | None, *, thorough: bool) -> ListedPage:
        at = json.loads(cursor) if cursor else {"resource": 0}
        resource = int(at["resource"])
        params = {
            "limit": str(PAGE_SIZE),
            "resource_type": RESOURCE_TYPES[resource],
            "created_at[gte]": _time(window.since),
            "created_at[lte]": _time(window.until),
        }
        if at.get("after"):
            params["after"] = str(at["after"])
        page = self._list(params)
        records = tuple(
            json.dumps(event.attributes, separators=(",", ":")).encode() for event in page.records
        )
        if page.after:
            return ListedPage(
                records, json.dumps({"resource": resource, "after": page.after}), more=True
            )
        more = resource + 1 < len(RESOURCE_TYPES)
        return ListedPage(records, json.dumps({"resource": resource + 1}), more=more)

    def redact(self, record: bytes) -> bytes | None:
        return redact_json(record)

    def normalise(self, record: bytes) -> list[Normalised]:
        return [
            normalise_event(
                json.loads(record),
                paid_action=self._section.paid_action,
                invoice_metadata_key=self._invoice_metadata_key,
            )
        ]

    def _list(self, params: dict[str, str]) -> Any:
        client = client_for(self._section, self._access_token)
        try:
            return client.events.list(params=params)
        except errors.RateLimitError:
            # The SDK keeps no headers (GoCardless's RateLimit-Reset): the scan backs off.
            raise RateLimited("GoCardless answered 429") from None
        except UNAVAILABLE as exc:
            raise ProviderLookupUnavailable(
                f"GoCardless's events list unavailable ({exc.__class__.__name__})"
            ) from None
        except REFUSED as exc:
            raise ProviderLookupError(
                f"GoCardless refused GOCARDLESS_ACCESS_TOKEN ({exc.__class__.__name__})"
            ) from None
        except errors.ApiError as exc:
            raise ProviderLookupError(
                f"GoCardless rejected the events list: {exc.message}"
            ) from None


def _time(at: datetime) -> str:
    """As GoCardless writes its times (UTC, milliseconds, Z)."""
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
