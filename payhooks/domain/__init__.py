"""The payment domain: events, money, the providers that exist and what their messages share.

Imports nothing of ours, and names nothing above it. The receiver and the workers both read it.
"""
