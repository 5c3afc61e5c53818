"""Every Redis key payhooks writes, in one place (RQ's own keys are RQ's business)."""

import functools
import hashlib
import re

PREFIX = "payhooks"


def text(value: bytes | str) -> str:
    """A Redis reply as text (clients return bytes unless decode_responses is set)."""
    return value.decode() if isinstance(value, bytes) else value


def event(event_key: str) -> str:
    """Where 0.1.0 stored a queued event (now its job holds it): still read for jobs queued
    then, and still a dedupe record for as long as it is kept."""
    return f"{PREFIX}:event:{event_key}"


_NOT_IN_JOB_ID = re.compile(r"[^A-Za-z0-9_-]")
#: Enough of the event key to read in a job listing; the digest makes the id unique.
JOB_ID_READABLE_CHARS = 48


@functools.lru_cache(maxsize=4096)  # the receiver names each job twice: queued, then logged
def job_id(event_key: str) -> str:
    """The RQ job id of an event: a readable prefix and a digest of the whole key.

    RQ job ids allow ASCII letters, digits, '_' and '-' only, so the readable part loses
    punctuation ("tx.1001" and "tx:1001" read alike); the SHA-256 digest of the exact
    event key keeps two distinct events apart whatever their ids hold, and bounds the
    length. Never parse a job id: the event key is the job's argument.
    """
    digest = hashlib.sha256(event_key.encode("utf-8", "surrogatepass")).hexdigest()[:32]
    readable = _NOT_IN_JOB_ID.sub("-", event_key)[:JOB_ID_READABLE_CHARS]
    return f"{readable}-{digest}"


def job_template(digest: str) -> str:
    """The RQ fields every job shares, which the record-once script copies into each new
    job (payhooks/storage/record_once.py); named by a digest of them. Kept without a TTL
    (one is never passed on), and written again by the script if it is missing."""
    return f"{PREFIX}:job-template:{digest}"


def legacy_job_id(event_key: str) -> str:
    """The id jobs were queued under before 0.2 (not injective); only to find old jobs."""
    return _NOT_IN_JOB_ID.sub("-", event_key)


def invoice_lock(invoice_id: int) -> str:
    return f"{PREFIX}:lock:invoice:{invoice_id}"


def invoice_record(invoice_id: int) -> str:
    """The invoice's money record: per payment, its token marker and the amount counted
    (workers/invoice_record.py)."""
    return f"{PREFIX}:invoice:{invoice_id}"


def token_marker(invoice_id: int, provider: str, token: str) -> str:
    """Whether we created, or may have created, this payment's token on this invoice, as
    releases before the invoice's record kept it; read while the record has nothing for the
    payment. Keyed by provider too: two providers' payments may carry the same token text.
    """
    return f"{PREFIX}:payment-token:{invoice_id}:{provider}:{token}"


def legacy_token_marker(invoice_id: int, token: str) -> str:
    """The marker written before 0.2 (no provider); read when the new one is absent."""
    return f"{PREFIX}:token:{invoice_id}:{token}"


def invoice_applied(invoice_id: int) -> str:
    """The payments counted on an invoice (JSON amounts), as releases before the invoice's
    record kept them; read for the payments the record has nothing for."""
    return f"{PREFIX}:invoice:{invoice_id}:applied"


def payment_binding(provider: str, token: str) -> str:
    """Which invoice a payment was applied to: one payment settles one invoice."""
    return f"{PREFIX}:payment:{provider}:{token}"


def payment_reversals(provider: str, token: str) -> str:
    """The money of a payment that went back (refunds, chargebacks, disputes lost)."""
    return f"{PREFIX}:reversed:{provider}:{token}"


def payment_held_events(provider: str, token: str) -> str:
    """The paid events of a payment held back (in full or in part) by its reversals."""
    return f"{PREFIX}:held:{provider}:{token}"


def payment_reversal_flag(provider: str, token: str) -> str:
    """Which event flagged the payment's reversal on a paid invoice, and at what amount."""
    return f"{PREFIX}:reversal-flag:{provider}:{token}"


def trail(event_key: str) -> str:
    return f"{PREFIX}:trail:{event_key}"


def webhook(digest: str) -> str:
    return f"{PREFIX}:webhook:{digest}"


def polled(digest: str) -> str:
    """A record a poll read from a provider's API, kept as its events' origin."""
    return f"{PREFIX}:polled:{digest}"


def task_lease(task: str) -> str:
    """Who runs a scheduled task now: the run's token, until its lease lapses."""
    return f"{PREFIX}:task:{task}:lease"


def task_cursor(task: str) -> str:
    """Where a scheduled task's next run starts (a poll's position in the provider's list)."""
    return f"{PREFIX}:task:{task}:cursor"


def task_tick(task: str) -> str:
    """The last tick of a task the scheduler queued a run for (one per tick, all instances)."""
    return f"{PREFIX}:task:{task}:tick"


def invoice_events(invoice_id: int) -> str:
    return f"{PREFIX}:invoice:{invoice_id}:events"


#: Paid events handed off and not yet ended by their job, scored by when they were paid
#: (payhooks/storage/unapplied.py).
UNAPPLIED = f"{PREFIX}:unapplied"

NEXUDUS_AUTH = f"{PREFIX}:nexudus:auth"
NEXUDUS_AUTH_LOCK = f"{PREFIX}:nexudus:auth:lock"


def breaker(name: str) -> str:
    """The prefix of a circuit breaker's keys (workers/breaker.py)."""
    return f"{PREFIX}:breaker:{name}"


def rate_bucket(name: str) -> str:
    return f"{PREFIX}:rate:{name}"


def reconcile_cursor(provider: str, since: int, until: int) -> str:
    """Where a `payhooks reconcile` of one provider's window got to (Unix seconds), so a
    run of the same window after a failure resumes there."""
    return f"{PREFIX}:reconcile:{provider}:{since}-{until}:cursor"


def reconcile_pending(provider: str) -> str:
    """The provider's records a scan listed still open, to read back until they are final
    (a sorted set of their ids, scored by creation time, Unix seconds:
    payhooks/storage/pending_watch.py)."""
    return f"{PREFIX}:reconcile:{provider}:pending"
