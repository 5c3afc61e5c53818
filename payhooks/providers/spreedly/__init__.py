"""Spreedly (Nexudus's MultiGateway, provider value 1 by default): XML ``<transactions>``
callbacks, each transaction signed on its own in a ``<signed>`` block.

Trusted: a transaction whose signed fields (token, state, succeeded, amount, currency and
type among them) match their HMAC under one of our signing secrets, and then only its
token: the job reads the transaction back from Spreedly's API (HTTP Basic, environment key
and access secret) and takes its type, state, amount, currency, order id (the invoice) and
test-gateway flag from there. A request any transaction of which fails is refused whole.
"""
