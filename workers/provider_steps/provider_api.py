"""One shape for the provider APIs a job calls: a request, and its failures classified once.

Unreachable, 5xx and 429 are transient (the job retries with backoff); 401 and 403 mean
our credentials were refused, which no retry mends (permanent, naming the variables to
check). Any other answer is the caller's to read. No message holds a credential.
"""

from __future__ import annotations

from typing import Any

import httpx

from workers.errors import ProviderLookupError, ProviderLookupUnavailable

TIMEOUT_SECONDS = 30.0


class ProviderApi:
    def __init__(self, display_name: str, *, credentials: str) -> None:
        #: How messages name the API ("Forte's API").
        self.display_name = display_name
        #: The variables that hold its credentials, for the message when they are refused.
        self._credentials = credentials

    def send(self, method: str, url: str, **request: Any) -> httpx.Response:
        try:
            response = httpx.request(method, url, timeout=TIMEOUT_SECONDS, **request)
        except httpx.HTTPError as exc:
            raise ProviderLookupUnavailable(
                f"{self.display_name} unreachable ({exc.__class__.__name__})"
            ) from None
        status = response.status_code
        if status >= 500 or status == 429:
            raise ProviderLookupUnavailable(
                f"{self.display_name} answered {status}", retry_after=_retry_after(response)
            )
        if status in (401, 403):
            raise ProviderLookupError(
                f"{self.display_name} refused our credentials ({status}): check {self._credentials}"
            )
        return response


def _retry_after(response: httpx.Response) -> float | None:
    try:
        return float(response.headers.get("Retry-After", ""))
    except ValueError:
        return None
