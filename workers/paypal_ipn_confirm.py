"""Confirms a PayPal IPN with PayPal before any money is recorded.

The raw body, as it was received (kept by the receiver in the event trail), is posted back
with ``cmd=_notify-validate``; only ``VERIFIED``, for one of our receiver addresses, counts.
"""

from __future__ import annotations

import httpx

from payhooks.events import PaymentEvent, PaymentKind
from payhooks.trail import Trail
from service.providers.paypal_ipn import PayPalIpn, ipn_fields
from workers.errors import ProviderLookupError, ProviderLookupUnavailable


class PayPalIpnConfirm:
    def __init__(self, trail: Trail, *, ipn_url: str, receiver_emails: tuple[str, ...]) -> None:
        self._trail = trail
        self._ipn_url = ipn_url
        self._receivers = {e.lower() for e in receiver_emails}

    def __call__(self, event: PaymentEvent) -> PaymentEvent:
        if event.kind not in (PaymentKind.PAID, PaymentKind.PENDING):
            return event
        body = self._body_of(event)
        fields = ipn_fields(body)
        if fields.get("receiver_email", "").lower() not in self._receivers:
            raise ProviderLookupError(
                "the IPN is for another PayPal account (receiver_email is not in "
                "PAYPAL_IPN_RECEIVER_EMAILS)"
            )
        try:
            response = httpx.post(
                self._ipn_url,
                content=b"cmd=_notify-validate&" + body,
                headers={"Content-Type": "application/x-www-form-urlencoded"},
                timeout=30,
            )
        except httpx.HTTPError as exc:
            raise ProviderLookupUnavailable(
                f"PayPal's IPN check unreachable ({exc.__class__.__name__})"
            ) from None
        if response.status_code != 200:
            raise ProviderLookupUnavailable(f"PayPal's IPN check answered {response.status_code}")
        answer = response.text.strip()
        if answer != "VERIFIED":
            raise ProviderLookupError(f"PayPal did not confirm this IPN ({answer[:20] or 'empty'})")
        return event

    def _body_of(self, event: PaymentEvent) -> bytes:
        """The stored body this very event was made from.

        Several bodies can share an event's trail (an ignored one, then another with the
        same txn_id and status): only one that normalises to exactly this event is posted
        back, so PayPal vouches for what is applied, not for some other message.
        """
        for entry in self._trail.history(event.key):
            webhook_key = entry.get("webhook")
            stored = self._trail.webhook(str(webhook_key)) if webhook_key else None
            if stored is None:
                continue
            body: bytes = stored["body"]
            if PayPalIpn().normalise(body, {}) == [event]:
                return body
        raise ProviderLookupError("the IPN's raw body is no longer stored; it cannot be confirmed")
