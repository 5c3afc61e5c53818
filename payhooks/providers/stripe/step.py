"""Completes a Stripe event in the job, with what the webhook alone cannot say.

- **Which payment method paid.** A PaymentIntent event carries only ids for its charge
  and payment method, and ``payment_method_types`` lists every allowed type, so card,
  ACH and BACS can only be told apart by retrieving the PaymentIntent with its latest
  charge.
- **Which payment paid a Stripe invoice** (API versions 2025-03-31.basil and later). The
  Invoice of ``invoice.paid`` names no PaymentIntent, and the InvoicePayment of
  ``invoice_payment.paid`` names one but not the invoice's metadata. Both events must
  record the same token, the PaymentIntent's id (refunds and disputes name it too):

  - with ``STRIPE_API_KEY``: the invoice's event asks Stripe for its InvoicePayments
    (``GET /v1/invoice_payments?invoice=in_…&status=paid``), the InvoicePayment's event
    reads its invoice (``GET /v1/invoices/in_…``) for the Nexudus reference;
  - without it: the two events complete each other through Redis. Each job stores what
    its event knows under the Stripe invoice id and reads what the other stored, in one
    transaction, so whichever runs second sees both halves. An InvoicePayment's event
    stores its payment and its own amount; once the invoice's event has named the Nexudus
    invoice, it records that payment itself, at that amount. One seen before, whose
    invoice may be none of ours, finishes as ignored, leaving the recording to the
    invoice's event. The invoice's event waits (retried with backoff) until the payments
    seen add up to its ``amount_paid``, then records the one payment left to it, at that
    payment's own amount (an invoice paid 60.00 + 40.00 is never recorded as 100.00 by
    its first payment); if several were left to it, one event cannot record them all and
    it fails saying which InvoicePayment events to replay (they record themselves now
    that the invoice is known) or to set the key. Nothing records the ``in_…`` id as a
    token.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from decimal import Decimal
from typing import Any, TypeVar

import stripe
from redis import Redis

from payhooks.domain.events import (
    REFUNDED_TOTAL,
    REFUNDS_OF,
    InvoiceRef,
    PaymentEvent,
    PaymentKind,
    RegularPaymentProvider,
)
from payhooks.providers.kit.step_errors import (
    PermanentError,
    ProviderLookupError,
    ProviderLookupUnavailable,
    TransientError,
)
from payhooks.providers.stripe.formats import (
    STRIPE_INVOICE_DETAIL,
    invoice_ref_of,
    is_invoice_stand_in,
    provider_for_method,
    token_of,
)
from payhooks.providers.stripe.settings import StripeSettings
from payhooks.settings import Settings
from payhooks.storage.redis_keys import text
from payhooks.storage.trail import Trail

log = logging.getLogger("payhooks.stripe")
T = TypeVar("T")


class AwaitingInvoicePayment(TransientError):
    """A basil invoice's event, before its invoice_payment.paid events have been seen."""


class InvoicePaymentsUnresolved(PermanentError):
    """A basil invoice whose payments its events alone cannot record right (no key)."""


#: Join-hash fields: an InvoicePayment's own amount, and that it recorded itself.
PAID_FIELD = "paid:"
SELF_FIELD = "self:"


def _join_key(stripe_invoice: str) -> str:
    return f"payhooks:stripe:invoice:{stripe_invoice}"


class StripeStep:
    def __init__(
        self,
        api_key: str | None,
        api_base: str | None = None,
        *,
        redis: Redis,
        invoice_metadata_key: str = "nexudus_invoice_id",
        ttl_seconds: int = 30 * 86400,
    ) -> None:
        self._api_key = api_key
        self._api_base = api_base
        self._redis = redis
        self._invoice_metadata_key = invoice_metadata_key
        self._ttl = ttl_seconds

    @classmethod
    def from_settings(cls, settings: Settings, redis: Redis, trail: Trail) -> StripeStep:
        section = settings.provider(StripeSettings)
        return cls(
            section.api_key,
            section.api_base,
            redis=redis,
            invoice_metadata_key=settings.invoice_metadata_key,
            ttl_seconds=settings.event_ttl_seconds,
        )

    def __call__(self, event: PaymentEvent) -> PaymentEvent:
        if event.event_type == "charge.refunded" and REFUNDS_OF not in event.details:
            # Queued before refunds named their charge: its figure is the charge's total.
            event = event.with_changes(
                details={**event.details, REFUNDS_OF: event.object_id, REFUNDED_TOTAL: "true"}
            )
        stripe_invoice = event.details.get(STRIPE_INVOICE_DETAIL)
        # Failed and refunded events write nothing, so they need no payment found.
        records = event.kind in (PaymentKind.PAID, PaymentKind.PENDING)
        if records and stripe_invoice and (is_invoice_stand_in(event.token) or not event.invoice):
            event = (
                self._from_api(event, stripe_invoice)
                if self._api_key
                else self._from_other_event(event, stripe_invoice)
            )
        return self._with_method(event)

    # -- the payment of a Stripe invoice --------------------------------------------

    def _from_api(self, event: PaymentEvent, stripe_invoice: str) -> PaymentEvent:
        if is_invoice_stand_in(event.token):
            token = self._call(stripe_invoice, lambda c: _paid_payment(c, stripe_invoice))
            if token is None:
                # Paid out of band, by credit, or by several payments: each payment's
                # own invoice_payment.paid event records it; this one records nothing.
                log.info(
                    "stripe.invoice_without_single_payment",
                    extra={"event_id": event.event_id, "stripe_invoice": stripe_invoice},
                )
                return event.with_changes(invoice=InvoiceRef())
            event = event.with_changes(token=token)
        if not event.invoice:
            invoice = self._call(
                stripe_invoice,
                lambda c: c.v1.invoices.retrieve(stripe_invoice).to_dict(),
            )
            event = event.with_changes(invoice=invoice_ref_of(invoice, self._invoice_metadata_key))
        return event

    def _from_other_event(self, event: PaymentEvent, stripe_invoice: str) -> PaymentEvent:
        mine: dict[Any, str] = {}
        if not is_invoice_stand_in(event.token):
            mine["token"] = event.token  # what versions before the split read
            if event.kind is PaymentKind.PAID and event.amount is not None:
                mine[PAID_FIELD + event.token] = (
                    f"{event.amount} {event.currency or ''} {event.event_id}"
                )
        if event.invoice.invoice_id is not None:
            mine["invoice_id"] = str(event.invoice.invoice_id)
        if event.invoice.number:
            mine["number"] = event.invoice.number
        key = _join_key(stripe_invoice)
        with self._redis.pipeline(transaction=True) as pipe:
            if mine:
                pipe.hset(key, mapping=mine)
                pipe.expire(key, self._ttl)
            pipe.hgetall(key)
            known = {text(k): text(v) for k, v in pipe.execute()[-1].items()}
        if is_invoice_stand_in(event.token):
            return self._left_to_the_invoice(event, stripe_invoice, known)
        if not event.invoice:
            invoice_id = known.get("invoice_id")
            event = event.with_changes(
                invoice=InvoiceRef(
                    invoice_id=int(invoice_id) if invoice_id else None,
                    number=known.get("number"),
                )
            )
            if not event.invoice:
                log.info(
                    "stripe.invoice_payment_before_invoice",
                    extra={"event_id": event.event_id, "stripe_invoice": stripe_invoice},
                )
            else:
                # It records itself: the invoice's event must not record it too at another
                # amount. (If the invoice's event reads the hash before this lands, it
                # records this same payment at this same amount: counted once.)
                self._redis.hset(key, SELF_FIELD + event.token, "1")
        return event

    def _left_to_the_invoice(
        self, event: PaymentEvent, stripe_invoice: str, known: dict[str, str]
    ) -> PaymentEvent:
        """The payment the invoice's event records: the one of its payments that did not
        record itself, at its own amount, once the payments add up to the invoice's."""
        payments = {
            name.removeprefix(PAID_FIELD): value.split(" ")
            for name, value in known.items()
            if name.startswith(PAID_FIELD)
        }
        if not payments and "token" in known:
            return event.with_changes(token=known["token"])  # stored by an older version
        seen = ", ".join(
            f"{token} {amount} {currency}" for token, (amount, currency, _) in payments.items()
        )
        if not payments or event.amount is None:
            raise AwaitingInvoicePayment(
                f"Stripe invoice {stripe_invoice} names no PaymentIntent (API version"
                " 2025-03-31.basil or later): waiting for its invoice_payment.paid event."
                " Subscribe the endpoint to invoice_payment.paid, or set STRIPE_API_KEY"
            )
        if any(currency != event.currency for _, currency, _ in payments.values()):
            raise InvoicePaymentsUnresolved(
                f"Stripe invoice {stripe_invoice} ({event.amount} {event.currency}) was paid in"
                f" another currency ({seen}): nothing recorded; set STRIPE_API_KEY or record it"
                " by hand"
            )
        total = sum((Decimal(amount) for amount, _, _ in payments.values()), Decimal(0))
        if total < event.amount:
            raise AwaitingInvoicePayment(
                f"Stripe invoice {stripe_invoice} was paid {event.amount} {event.currency};"
                f" its invoice_payment.paid events so far add up to {total} ({seen}):"
                " waiting for the rest"
            )
        if total > event.amount:
            raise InvoicePaymentsUnresolved(
                f"Stripe invoice {stripe_invoice} was paid {event.amount} {event.currency} but"
                f" its invoice_payment.paid events add up to {total} ({seen}): nothing"
                " recorded; set STRIPE_API_KEY and replay this event, or record it by hand"
            )
        left = [token for token in payments if SELF_FIELD + token not in known]
        if not left:
            # Every payment recorded itself at its own amount: nothing left to this event.
            return event.with_changes(invoice=InvoiceRef())
        if len(left) > 1:
            replay = ", ".join(f"stripe:{payments[token][2]}" for token in left)
            raise InvoicePaymentsUnresolved(
                f"Stripe invoice {stripe_invoice} was paid by {len(left)} payments whose"
                f" invoice_payment.paid events came before invoice.paid ({seen}); one event"
                " cannot record them all, and none at the invoice's whole amount. Now that"
                f" the invoice is known they record themselves: run `payhooks replay-event`"
                f" for each of {replay}, then purge this job (or set STRIPE_API_KEY)"
            )
        [token] = left
        amount, currency, _ = payments[token]
        return event.with_changes(token=token, amount=Decimal(amount), currency=currency)

    # -- the payment method ----------------------------------------------------------

    def _with_method(self, event: PaymentEvent) -> PaymentEvent:
        if event.regular_payment_provider is not None:
            return event
        if not self._api_key:
            log.warning("stripe.method_unknown", extra={"event_id": event.event_id})
            return event.with_changes(
                regular_payment_provider=RegularPaymentProvider.STRIPE,
                payment_method="unknown (no STRIPE_API_KEY to look it up)",
            )
        method = self._call(event.token, lambda c: _method_of_payment(c, event.token))
        return event.with_changes(
            regular_payment_provider=provider_for_method(method)
            if method
            else RegularPaymentProvider.STRIPE,
            payment_method=method or "unknown",
        )

    # -- the API ---------------------------------------------------------------------

    def _call(self, what: str, request: Callable[[stripe.StripeClient], T]) -> T:
        """Run one API request, turning Stripe's errors into the job's."""
        client = stripe.StripeClient(
            self._api_key or "",
            base_addresses={"api": self._api_base} if self._api_base else None,
            max_network_retries=1,
        )
        try:
            return request(client)
        except (stripe.APIConnectionError, stripe.RateLimitError) as exc:
            raise ProviderLookupUnavailable(
                f"Stripe API unavailable: {exc.__class__.__name__}"
            ) from None
        except stripe.InvalidRequestError as exc:
            raise ProviderLookupError(
                f"Stripe could not find {what} with STRIPE_API_KEY ({exc.code or 'invalid request'});"
                " is the key for the same Stripe account as the webhook secret?"
            ) from None
        except stripe.AuthenticationError:
            raise ProviderLookupError("Stripe rejected STRIPE_API_KEY") from None
        except stripe.PermissionError:
            raise ProviderLookupError(
                "STRIPE_API_KEY may not read this (a restricted key needs read access to"
                " PaymentIntents, Charges, Invoices and Invoice Payments)"
            ) from None
        except stripe.APIError as exc:
            raise ProviderLookupUnavailable(f"Stripe API error: {exc.__class__.__name__}") from None


def _paid_payment(client: stripe.StripeClient, stripe_invoice: str) -> str | None:
    """The PaymentIntent (or charge) that paid the invoice, if exactly one did."""
    listing = client.v1.invoice_payments.list(params={"invoice": stripe_invoice, "status": "paid"})
    tokens = {token_of({**item.to_dict(), "object": "invoice_payment"}) for item in listing.data}
    tokens.discard(None)
    return tokens.pop() if len(tokens) == 1 else None


def _method_of_payment(client: stripe.StripeClient, token: str) -> str | None:
    if token.startswith("pi_"):
        intent = client.v1.payment_intents.retrieve(token, params={"expand": ["latest_charge"]})
        return _method_of(intent.to_dict().get("latest_charge"))
    if token.startswith(("ch_", "py_")):
        return _method_of(client.v1.charges.retrieve(token).to_dict())
    return None


def _method_of(charge: Any) -> str | None:
    if not isinstance(charge, dict):
        return None
    details = charge.get("payment_method_details")
    if details and isinstance(details.get("type"), str):
        return str(details["type"])
    return None
