"""ePay (Bambora Online ePay): GET callbacks with an MD5 over the parameter values.

Trusted: the MD5 with our secret, for the fact that a payment was authorised; the job
confirms the transaction and its amount with ePay's web service before recording money.
"""
