"""EziDebit (Ezidebit, Australia and New Zealand; Nexudus provider value 9): no webhook.

Ezidebit publishes no server-to-server notification of payment results, so payhooks asks:
the scheduler polls the non-PCI SOAP service's ``GetPayments`` (by settlement date, over an
overlapping window) with the account's Digital Key. Trusted: what Ezidebit's own service
answers over TLS to our key; there is nothing to verify in a message, because none comes.
"""
