"""What every provider's formats share (each provider's formats.py says what its messages say,
read the same way by its receiver and its worker step).

Only parsing and constants: no HTTP, no Redis, no signature checks (those are each
provider's receiver.py). A message that cannot be read raises UnreadableMessage,
which the receiver answers as a malformed payload.
"""

import hashlib

BODY_DIGEST_CHARS = 32


def body_digest(body: bytes) -> str:
    """Names a message's exact body, for providers that sign nothing (PayPal IPN, Forte):
    in the event id, a forgery copying a genuine event's fields is another event, and can
    never make the genuine one a duplicate; the provider's redelivery of the same body is."""
    return hashlib.sha256(body).hexdigest()[:BODY_DIGEST_CHARS]


class UnreadableMessage(ValueError):
    """A provider's message that names no event we could record."""
