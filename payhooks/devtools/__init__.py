"""Development stand-ins: `payhooks dev`, the sandboxes, signed samples, an embedded Redis.

For development, the tests and the benchmarks; service/, workers/, storage/ and domain/
never import it. The CLI above it does (`payhooks dev`, and where a running one is); it
imports nothing of the CLI, whose processes it starts as processes.
"""
