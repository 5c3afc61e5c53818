"""Stripe: signed JSON events (card, ACH and Bacs payments, invoices, checkout sessions).

Trusted: a ``Stripe-Signature`` that verifies with one of our endpoint secrets, within the
tolerance window, on a live-mode event. Stripe's newer invoices do not name both the
payment and the Nexudus invoice in one event: the job completes those from Stripe's API.
"""
