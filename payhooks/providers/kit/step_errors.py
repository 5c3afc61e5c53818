"""What a provider's step raises: the job's error classes, transient or permanent.

The worker's classifier (workers/errors.py, workers/jobs.py) retries a transient error with
backoff and fails a permanent one at once; a step raises these from below the workers.
"""

from __future__ import annotations


class JobError(Exception):
    """Base of every expected job failure."""

    transient = False
    retry_after: float | None = None
    #: False where the failure says nothing about this job (Nexudus is down for all):
    #: such an attempt is not counted against the job's JOB_MAX_ATTEMPTS.
    counts_as_attempt = True
    #: A write was sent and its outcome is unknown (a timeout, a 5xx): it may still land,
    #: so the job must not search-and-write again at once (RQ retries it after a backoff).
    write_may_have_landed = False

    @property
    def error_class(self) -> str:
        return type(self).__name__


class TransientError(JobError):
    transient = True

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class PermanentError(JobError):
    """Retrying cannot help until someone fixes the cause; then replay the job."""


class ProviderLookupError(PermanentError):
    """The provider's API refused or contradicted the event: a person must look."""


class ProviderLookupUnavailable(TransientError):
    """The provider's API did not answer usefully (unreachable, 5xx, 429): retried."""
