"""PayPal IPN (PayPal Standard subscriptions, provider 5).

IPN has no signature: the receiver acknowledges at once (as PayPal requires) and keeps the
raw body; before the event is applied the job posts that body back to PayPal
(``cmd=_notify-validate``, ipn_step.py) and needs ``VERIFIED``.
The form itself, and the event id that names the exact body, are read in
ipn_formats.py, which the job reads with too.
"""

from __future__ import annotations

from collections.abc import Mapping

from payhooks.domain.events import Normalised
from payhooks.domain.messages import UnreadableMessage
from payhooks.providers.kit.receiver_errors import BodyTooLarge, MalformedPayload
from payhooks.providers.kit.receiving import FORM, ReceiverDefaults
from payhooks.providers.paypal.ipn_formats import PROVIDER, ipn_events
from payhooks.providers.paypal.settings import PayPalIpnSettings
from payhooks.settings import Settings

MAX_IPN_BYTES = 20_000  # the endpoint is unauthenticated: keep what it stores small


class PayPalIpn(ReceiverDefaults):
    name = PROVIDER
    content_types = FORM

    @classmethod
    def from_settings(cls, settings: Settings) -> PayPalIpn:
        return cls(settings.provider(PayPalIpnSettings).url_tokens)

    def __init__(self, url_tokens: tuple[str, ...] = ()) -> None:
        # Optional, for the URLs PayPal already posts to; with one, a forger must know it too.
        self.url_tokens = url_tokens

    def redact(self, body: bytes) -> bytes | None:
        return None  # kept byte for byte: the job posts it back to PayPal

    def verify(self, body: bytes, headers: Mapping[str, str]) -> None:
        """Only size here: the job confirms each IPN with PayPal before money moves."""
        if len(body) > MAX_IPN_BYTES:
            raise BodyTooLarge("an IPN is a few kilobytes")

    def normalise(self, body: bytes, headers: Mapping[str, str]) -> list[Normalised]:
        try:
            return ipn_events(body)
        except UnreadableMessage as exc:
            raise MalformedPayload(str(exc)) from None
