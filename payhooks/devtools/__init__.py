"""Development stand-ins: `payhooks dev`, the sandboxes, signed samples, an embedded Redis.

For development, the tests and the benchmarks; service/, workers/, storage/ and domain/
never import it.
"""
