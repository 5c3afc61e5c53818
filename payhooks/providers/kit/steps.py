"""Provider steps: what a job asks a provider's API before the event is applied.

One module per provider that needs one: it confirms the event (ePay, PayPal IPN: the
callback itself is not proof enough) or completes it (Stripe, GoCardless, Authorize.Net:
the webhook leaves out the payment method, the invoice or the amount).

Each step is a class in its provider's ``step.py``, built by ``from_settings(settings,
redis, trail)`` and listed in payhooks/providers/worker_steps.py.
"""

from __future__ import annotations

from collections.abc import Callable

from payhooks.domain.events import PaymentEvent

#: Confirms or completes one event, or raises (kit/step_errors.py says how it is retried).
ProviderStep = Callable[[PaymentEvent], PaymentEvent]

__all__ = ["ProviderStep"]
