"""Redis: its keys, the connection, the event trail, the one RQ job definition, worker metrics.

Imports only the domain and settings; the receiver, the workers and the CLI share it.
"""
