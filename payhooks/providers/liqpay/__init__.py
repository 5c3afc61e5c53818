"""LiqPay: form-encoded callbacks (``data``, ``signature``) signed with SHA-1 or SHA3-256.

Trusted: a signature that matches one of our private keys over ``data`` as sent; the
callback carries the payment, so the job calls no LiqPay API.
"""
