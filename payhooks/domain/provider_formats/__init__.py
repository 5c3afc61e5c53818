"""What providers' messages say, read the same way by the receiver and by the workers.

Only parsing and constants: no HTTP, no Redis, no signature checks (those are the
receiver's, service/providers/). A message that cannot be read raises UnreadableMessage,
which the receiver answers as a malformed payload.
"""


class UnreadableMessage(ValueError):
    """A provider's message that names no event we could record."""
