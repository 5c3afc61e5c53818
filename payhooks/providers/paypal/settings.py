"""PayPal's two settings sections: REST webhooks and IPN."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from payhooks.settings.provider import ProviderSettings
from payhooks.settings.reading import (
    Rows,
    choice,
    count,
    is_set,
    items,
    require_https,
    setting,
    text,
    url,
    url_tokens,
)

#: Where PayPal's message-signing certificates may be fetched from.
PAYPAL_CERT_URL_PREFIXES = (
    "https://api.paypal.com/",
    "https://api-m.paypal.com/",
    "https://api.sandbox.paypal.com/",
    "https://api-m.sandbox.paypal.com/",
)


def _provider_value(env: Mapping[str, str], name: str, default: int | None) -> int | None:
    """``auto`` (the default), 5 or 6: the eRegularPaymentProvider its tokens carry."""
    value = choice("auto", "5", "6")(env, name, "auto" if default is None else str(default))
    return None if value == "auto" else int(value)


@dataclass(frozen=True, slots=True)
class PayPalSettings(ProviderSettings):
    ENABLED_BY = "webhook_ids"

    webhook_ids: tuple[str, ...] = setting("PAYPAL_WEBHOOK_IDS", (), items)
    cert_url_prefixes: tuple[str, ...] = setting(
        "PAYPAL_CERT_URL_PREFIXES", PAYPAL_CERT_URL_PREFIXES, items
    )
    cert_trust_file: str | None = setting("PAYPAL_CERT_TRUST_FILE", None, text)
    provider_value: int | None = setting("PAYPAL_PROVIDER_VALUE", None, _provider_value)
    #: A REST app's client credentials (OAuth client_credentials): reconciliation reads
    #: PayPal's list of webhook events with them; webhooks need none.
    client_id: str | None = setting("PAYPAL_CLIENT_ID")
    client_secret: str | None = setting("PAYPAL_CLIENT_SECRET", secret=True)
    api_base: str = setting("PAYPAL_API_BASE", "https://api-m.paypal.com", url)

    def check(self) -> None:
        # The client secret and the bearer token travel to it.
        require_https("PAYPAL_API_BASE", self.api_base)

    def rows(self) -> Rows:
        return [
            ("webhook ids", count(self.webhook_ids)),
            ("certificates from", ", ".join(self.cert_url_prefixes)),
            ("trusted roots", self.cert_trust_file or "the certifi bundle"),
            ("provider value", str(self.provider_value or "auto")),
            ("client id", is_set(self.client_id)),
            ("client secret", is_set(self.client_secret)),
            ("API", self.api_base),
        ]


@dataclass(frozen=True, slots=True)
class PayPalIpnSettings(ProviderSettings):
    ENABLED_BY = "receiver_emails"

    receiver_emails: tuple[str, ...] = setting("PAYPAL_IPN_RECEIVER_EMAILS", (), items)
    #: IPN signs nothing: with a token, its URL is /webhooks/paypal-ipn/<token>.
    url_tokens: tuple[str, ...] = setting("PAYPAL_IPN_URL_TOKENS", (), url_tokens, secret=True)
    ipn_url: str = setting("PAYPAL_IPN_URL", "https://ipnpb.paypal.com/cgi-bin/webscr", url)

    def rows(self) -> Rows:
        return [
            ("receiver addresses", ", ".join(self.receiver_emails)),
            (
                "URL token",
                count(self.url_tokens)
                if self.url_tokens
                else "not set: anyone may post to the URL (each IPN is confirmed with PayPal)",
            ),
            ("postback to", self.ipn_url),
        ]
