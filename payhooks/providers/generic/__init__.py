"""Operators' own systems (bank feeds, cash desks): Standard Webhooks, one URL per source.

Trusted: a Standard Webhooks signature with the source's secret, within five minutes, on
a body that matches the published JSON Schema. The job applies it as sent.
"""
