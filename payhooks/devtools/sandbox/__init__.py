"""Local stand-ins for the HTTP APIs payhooks talks to, for tests and `payhooks dev`."""
