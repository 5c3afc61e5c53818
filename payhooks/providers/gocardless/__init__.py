"""GoCardless: batched JSON webhooks, many events per request, signed with HMAC-SHA256.

Trusted: a ``Webhook-Signature`` that verifies with one of our secrets. A payment event
names only its payment: the job reads the payment (amount, currency, metadata, mandate)
from GoCardless's API.
"""
