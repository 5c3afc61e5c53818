"""The payment domain: events, money and what each provider's messages mean.

Imports nothing of ours. The receiver (service/) and the workers (workers/) both read it.
"""
