"""Provider steps: what a job asks a provider's API before the event is applied.

One module per provider that needs one: it confirms the event (ePay, PayPal IPN: the
callback itself is not proof enough) or completes it (Stripe, GoCardless, Authorize.Net:
the webhook leaves out the payment method, the invoice or the amount).
"""
