"""PayPal's REST API access token: OAuth 2.0 client credentials.

``POST {PAYPAL_API_BASE}/v1/oauth2/token`` with ``grant_type=client_credentials`` and the
app's client id and secret as HTTP Basic gives a bearer token and its lifetime
(``expires_in``, seconds; nine hours as PayPal issues them). The token is kept until a
minute before it lapses, so a scan of many pages asks for one token, not one a page.
Neither the secret nor the token ever appears in a message.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from payhooks.providers.kit.provider_api import ProviderApi
from payhooks.providers.kit.step_errors import ProviderLookupUnavailable

TOKEN_PATH = "/v1/oauth2/token"  # noqa: S105 (a path, not a secret)
CREDENTIALS = "PAYPAL_CLIENT_ID and PAYPAL_CLIENT_SECRET"
#: A token is renewed this long before PayPal says it lapses (clocks, a slow page).
MARGIN_SECONDS = 60.0

API = ProviderApi("PayPal's OAuth token endpoint", credentials=CREDENTIALS)


class PayPalOAuth:
    def __init__(
        self,
        api_base: str,
        client_id: str,
        client_secret: str,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._url = api_base.rstrip("/") + TOKEN_PATH
        self._auth = (client_id, client_secret)
        self._clock = clock
        self._token: str | None = None
        self._until = 0.0

    def authorization(self) -> dict[str, str]:
        """The ``Authorization`` header of a call to PayPal's REST API."""
        if self._token is None or self._clock() >= self._until:
            self._token, lifetime = self._issue()
            self._until = self._clock() + max(0.0, lifetime - MARGIN_SECONDS)
        return {"Authorization": f"Bearer {self._token}"}

    def forget(self) -> None:
        """Drop the kept token (PayPal refused it: revoked, or the app's secret rolled)."""
        self._token = None

    def _issue(self) -> tuple[str, float]:
        response = API.send(
            "POST",
            self._url,
            auth=self._auth,
            data={"grant_type": "client_credentials"},
            headers={"Accept": "application/json"},
        )
        try:
            answer = response.json()
        except ValueError:
            answer = None
        token = answer.get("access_token") if isinstance(answer, dict) else None
        if response.status_code != 200 or not isinstance(token, str) or not token:
            raise ProviderLookupUnavailable(
                f"{API.display_name} answered {response.status_code} without a token"
            )
        lifetime = answer.get("expires_in") if isinstance(answer, dict) else None
        seconds = float(lifetime) if isinstance(lifetime, int | float) else 0.0
        return token, seconds
