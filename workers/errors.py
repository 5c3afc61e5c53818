"""Why a job did not apply: transient (retried with backoff) or permanent (failed at once).

Each error carries the fields an ops person needs as attributes, and a message that
says what to do. No message ever contains a secret or a bearer token. The base classes and
the provider steps' own errors are in payhooks/providers/kit/step_errors.py, which the
steps raise from below the workers.
"""

from __future__ import annotations

from collections.abc import Sequence

from payhooks.providers.kit.step_errors import (
    JobError,
    PermanentError,
    ProviderLookupError,
    ProviderLookupUnavailable,
    TransientError,
)

__all__ = [
    "JobError",
    "PermanentError",
    "ProviderLookupError",
    "ProviderLookupUnavailable",
    "TransientError",
]


class NexudusError(JobError):
    def __init__(
        self,
        message: str,
        *,
        method: str,
        path: str,
        status: int | None,
        errors: Sequence[str] = (),
    ) -> None:
        detail = f"Nexudus {method} {path}"
        if status is not None:
            detail += f" -> {status}"
        text = f"{detail}: {message}"
        if errors:
            text += " [" + "; ".join(errors) + "]"
        super().__init__(text)
        self.method = method
        self.path = path
        self.status = status
        self.errors = list(errors)


class NexudusTransientError(NexudusError, TransientError):
    def __init__(
        self,
        message: str,
        *,
        method: str,
        path: str,
        status: int | None,
        retry_after: float | None = None,
    ) -> None:
        NexudusError.__init__(self, message, method=method, path=path, status=status)
        self.retry_after = retry_after


class NexudusThrottled(NexudusTransientError):
    """409 or 429: Nexudus asked us to slow down."""


class NexudusPermanentError(NexudusError, PermanentError):
    pass


class NexudusUnavailable(TransientError):
    """The shared breaker is open: most recent Nexudus calls failed, so none is made."""

    counts_as_attempt = False


class RecordStale(TransientError):
    """A record to PUT was older than allowed by the time its call could be sent.

    ``unauthorised``: Nexudus had answered the PUT 401 and re-authenticating made it late.
    """

    def __init__(self, message: str, *, unauthorised: bool = False) -> None:
        super().__init__(message)
        self.unauthorised = unauthorised


class PutNotSent(TransientError):
    """The PaidOn PUT could not be sent on a fresh record, try after try; says why."""


class InvoiceLockLost(TransientError):
    """The per-invoice lock expired before a write; nothing was written."""


class MarkerNotReplicated(TransientError):
    """A marker written before a Nexudus write reached fewer replicas than
    REDIS_ACK_REPLICAS in time; the write was not sent.

    Not counted as an attempt (as an open Nexudus breaker is not): a replica away for
    longer than the job's attempts would otherwise fail every payment for a person to
    replay. The job comes back every REPLICA_WAIT_SECONDS or so until a replica confirms;
    the unapplied-payments gauge and its alert say how long."""

    counts_as_attempt = False


#: How long a job held by MarkerNotReplicated waits before its next run (with jitter).
REPLICA_WAIT_SECONDS = 15.0


class InvoiceNotFound(PermanentError):
    def __init__(self, reference: str) -> None:
        super().__init__(
            f"no Nexudus invoice matches {reference}; create or correct it, then replay the job"
        )
        self.reference = reference


class InvoiceNotPayable(PermanentError):
    pass


class AmountMismatch(PermanentError):
    """Money arrived but does not settle the invoice: the token is recorded, PaidOn is not."""

    def __init__(self, invoice_id: int, reason: str) -> None:
        super().__init__(
            f"invoice {invoice_id} not marked paid: {reason}; the payment token was recorded "
            "with this note. Check the invoice in Nexudus."
        )
        self.invoice_id = invoice_id
        self.reason = reason


class InvoiceAlreadyPaid(PermanentError):
    """A payment arrived for an invoice that another payment had already settled.

    ``why`` says how we know: PaidOn in Nexudus, or payments counted whose PUT is to come.
    """

    def __init__(self, invoice_id: int, token: str, why: str) -> None:
        super().__init__(
            f"invoice {invoice_id}: {why}, when payment {token} arrived; its token was "
            "recorded with a note. Check for a double payment."
        )
        self.invoice_id = invoice_id


class PaymentReversed(PermanentError):
    """Money that paid an invoice went back (a refund, a chargeback, a dispute lost).

    payhooks never clears PaidOn: a person decides (reopen the invoice, or recover the money).
    """

    def __init__(self, invoice_id: int, token: str, what: str, paid_on: str) -> None:
        super().__init__(
            f"payment {token} was reversed after it was applied to invoice {invoice_id} "
            f"(PaidOn {paid_on}): {what}. PaidOn is left as it is; reopen the invoice in "
            "Nexudus or recover the money, then purge this job."
        )
        self.invoice_id = invoice_id


class PaymentReinstated(PermanentError):
    """Money that went back came back, but a paid event it held back is no longer stored."""

    def __init__(self, token: str, events: list[str]) -> None:
        super().__init__(
            f"the money of payment {token} came back, but its paid events {', '.join(events)} "
            "held back by the reversal are no longer stored, so they cannot be applied again; "
            "record the payment in Nexudus by hand"
        )
        self.token = token


class PaymentAlreadyApplied(PermanentError):
    """One payment must settle one invoice; this event names another."""

    def __init__(self, token: str, bound_to: int, named: int) -> None:
        super().__init__(
            f"payment {token} was already applied to invoice {bound_to} (or is being "
            f"applied to it), but this event names invoice {named}; check the payment's metadata"
        )
        self.token = token


class EventMissing(PermanentError):
    pass
