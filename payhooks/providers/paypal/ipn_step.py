"""Confirms a PayPal IPN with PayPal before it is applied.

The raw body, as it was received (kept by the receiver in the event trail), is posted back
with ``cmd=_notify-validate``; only ``VERIFIED``, for one of our receiver addresses, counts.
Every kind is confirmed, refunds and failures too: an unsigned message may claim anything.
Each body is its own event (its digest is in the event id), so each is confirmed on its
own: a forgery fails alone and never stands in for, or delays, the genuine notification.
"""

from __future__ import annotations

from redis import Redis

from payhooks.domain.events import PaymentEvent
from payhooks.domain.messages import body_digest
from payhooks.providers.kit.provider_api import ProviderApi
from payhooks.providers.kit.step_errors import ProviderLookupError, ProviderLookupUnavailable
from payhooks.providers.paypal.ipn_formats import ipn_events, ipn_fields
from payhooks.providers.paypal.settings import PayPalIpnSettings
from payhooks.settings import Settings
from payhooks.storage.trail import Trail

IPN_CHECK = ProviderApi("PayPal's IPN check", credentials=None)  # the postback has none


class PayPalIpnStep:
    def __init__(self, trail: Trail, *, ipn_url: str, receiver_emails: tuple[str, ...]) -> None:
        self._trail = trail
        self._ipn_url = ipn_url
        self._receivers = {e.lower() for e in receiver_emails}

    @classmethod
    def from_settings(cls, settings: Settings, redis: Redis, trail: Trail) -> PayPalIpnStep:
        section = settings.provider(PayPalIpnSettings)
        return cls(
            trail,
            ipn_url=section.ipn_url,
            receiver_emails=section.receiver_emails,
        )

    def __call__(self, event: PaymentEvent) -> PaymentEvent:
        body = self._body_of(event)
        fields = ipn_fields(body)
        if fields.get("receiver_email", "").lower() not in self._receivers:
            raise ProviderLookupError(
                "the IPN is for another PayPal account (receiver_email is not in "
                "PAYPAL_IPN_RECEIVER_EMAILS)"
            )
        response = IPN_CHECK.send(
            "POST",
            self._ipn_url,
            content=b"cmd=_notify-validate&" + body,
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        if response.status_code != 200:
            raise ProviderLookupUnavailable(f"PayPal's IPN check answered {response.status_code}")
        answer = response.text.strip()
        if answer != "VERIFIED":
            raise ProviderLookupError(
                f"PayPal did not confirm this IPN ({answer[:20] or 'empty'}): not sent by "
                "PayPal, so nothing is recorded; a genuine IPN of the same payment is another "
                "event and is applied on its own"
            )
        return event

    def _body_of(self, event: PaymentEvent) -> bytes:
        """The stored body this very event was made from.

        The event id names the body's digest, so its trail holds only that body; it is
        still checked to normalise to exactly this event, so PayPal vouches for what is
        applied and for nothing else. Events queued before ids named their body
        (``txn_id-status``) are matched on everything but that suffix.
        """
        for entry in self._trail.history(event.key):
            webhook_key = entry.get("webhook")
            stored = self._trail.webhook(str(webhook_key)) if webhook_key else None
            if stored is None:
                continue
            body: bytes = stored["body"]
            made = next(iter(ipn_events(body)), None)
            if not isinstance(made, PaymentEvent):
                continue
            legacy_id = made.event_id.removesuffix(f"-{body_digest(body)}")
            if event.event_id in (made.event_id, legacy_id) and event == made.with_changes(
                event_id=event.event_id
            ):
                return body
        raise ProviderLookupError("the IPN's raw body is no longer stored; it cannot be confirmed")
