"""Authorize.Net: JSON webhooks signed with HMAC-SHA512 (``X-ANET-Signature``).

Trusted: the signature, for the fact that something happened; the amount, the invoice
number and the status only as the job reads them back with getTransactionDetails.
"""
