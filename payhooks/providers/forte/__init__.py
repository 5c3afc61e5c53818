"""Forte (CSG Forte REST API v3): unsigned JSON webhooks naming a transaction.

Trusted: nothing in the body. The URL carries a secret of ours, and the job reads every
transaction back from Forte's API (status, amount, order number) before money is recorded.
"""
