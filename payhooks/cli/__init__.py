"""The `payhooks` command line and its ops commands. May import anything; nothing imports it."""
