"""Braintree: form-encoded notifications (``bt_signature``, ``bt_payload``), no event id.

Trusted: what Braintree's SDK parses after checking the HMAC for one of our key pairs.
The notification itself carries the transaction: the job calls no Braintree API.
"""
