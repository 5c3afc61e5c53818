"""Realistic, correctly signed sample webhooks: for `send-test`, the tests and the benchmark."""
