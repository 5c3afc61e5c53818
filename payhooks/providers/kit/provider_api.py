"""One shape for the provider APIs a job calls: a request, and its failures classified once.

Unreachable, 5xx and 429 are transient (the job retries with backoff); 401 and 403 mean
our credentials were refused, which no retry mends (permanent, naming the variables to
check), for an API that takes credentials. Any other answer is the caller's to read. No
message holds a credential.
"""

from __future__ import annotations

from typing import Any

import httpx

from payhooks.providers.kit.step_errors import ProviderLookupError, ProviderLookupUnavailable

TIMEOUT_SECONDS = 30.0
MAX_RETRY_AFTER_SECONDS = 3600.0


class ProviderApi:
    def __init__(self, display_name: str, *, credentials: str | None) -> None:
        #: How messages name the API ("Forte's API").
        self.display_name = display_name
        #: The variables that hold its credentials, for the message when they are refused;
        #: None for an API whose 401/403 cannot be about ours (a firewall's: retried).
        self._credentials = credentials

    def send(
        self,
        method: str,
        url: str,
        *,
        throttled: type[ProviderLookupUnavailable] = ProviderLookupUnavailable,
        **request: Any,
    ) -> httpx.Response:
        """``throttled``: what a 429 raises (a lister's scan waits out ``RateLimited``)."""
        try:
            response = httpx.request(method, url, timeout=TIMEOUT_SECONDS, **request)
        except httpx.HTTPError as exc:
            raise ProviderLookupUnavailable(
                f"{self.display_name} unreachable ({exc.__class__.__name__})"
            ) from None
        status = response.status_code
        if status == 429:
            raise throttled(f"{self.display_name} answered 429", retry_after=_retry_after(response))
        if status >= 500 or (status in (401, 403) and not self._credentials):
            raise ProviderLookupUnavailable(
                f"{self.display_name} answered {status}", retry_after=_retry_after(response)
            )
        if status in (401, 403):
            raise ProviderLookupError(
                f"{self.display_name} refused our credentials ({status}): check {self._credentials}"
            )
        return response


def _retry_after(response: httpx.Response) -> float | None:
    """Seconds, within an hour; anything else (a date, ``inf``, a year) is not taken."""
    try:
        seconds = float(response.headers.get("Retry-After", ""))
    except ValueError:
        return None
    return seconds if 0 <= seconds <= MAX_RETRY_AFTER_SECONDS else None
