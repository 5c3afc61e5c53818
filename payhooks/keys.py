"""Every Redis key payhooks writes, in one place (RQ's own keys are RQ's business)."""

import re

PREFIX = "payhooks"


def text(value: bytes | str) -> str:
    """A Redis reply as text (clients return bytes unless decode_responses is set)."""
    return value.decode() if isinstance(value, bytes) else value


def event(event_key: str) -> str:
    """The stored normalised event; its existence is the receiver's dedupe record."""
    return f"{PREFIX}:event:{event_key}"


_NOT_IN_JOB_ID = re.compile(r"[^A-Za-z0-9_-]")


def job_id(event_key: str) -> str:
    """RQ job ids allow ASCII letters, digits, '_' and '-' only."""
    return _NOT_IN_JOB_ID.sub("-", event_key)


def invoice_lock(invoice_id: int) -> str:
    return f"{PREFIX}:lock:invoice:{invoice_id}"


def token_marker(invoice_id: int, token: str) -> str:
    """Whether we created, or may have created, this payment token on this invoice."""
    return f"{PREFIX}:token:{invoice_id}:{token}"


def payment_binding(provider: str, token: str) -> str:
    """Which invoice a payment was applied to: one payment settles one invoice."""
    return f"{PREFIX}:payment:{provider}:{token}"


def trail(event_key: str) -> str:
    return f"{PREFIX}:trail:{event_key}"


def webhook(digest: str) -> str:
    return f"{PREFIX}:webhook:{digest}"


def invoice_events(invoice_id: int) -> str:
    return f"{PREFIX}:invoice:{invoice_id}:events"


NEXUDUS_AUTH = f"{PREFIX}:nexudus:auth"
NEXUDUS_AUTH_LOCK = f"{PREFIX}:nexudus:auth:lock"


def rate_bucket(name: str) -> str:
    return f"{PREFIX}:rate:{name}"
