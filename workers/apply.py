"""Apply one payment event to Nexudus, idempotently.

Paid: find the invoice, record the payment token unless it is there already, count the
payment on the invoice's running total (workers/invoice_ledger.py), and set PaidOn on the full
record once PaidAmount plus that total covers TotalAmount. Pending: the token only.
Failed: nothing is written (PaidOn is never cleared); the outcome is logged.

Refunded (refunds, chargebacks, disputes lost): the money that went back is recorded for
the payment (workers/reversals.py) before anything else, so that no later event or replay
of the payment records its token or sets PaidOn for it, and the running total no longer
counts it. A reversal of a payment that paid an invoice fails its job for a person
(PaymentReversed): PaidOn is never cleared by us.

Calls per newly paid payment whose event carries the invoice id: GET invoice, POST
token, PUT invoice, their slots reserved together so the PUT follows at once. The PUT
carries the record as it stood right before it: when more than FRESH_RECORD_SECONDS have
passed since the GET (a slow POST, a throttle), the invoice is read again and checked
again first. The token search happens only when an earlier attempt may have written
(see workers/markers.py).

Double payments: the ledger knows which payments settled a paid invoice; a paid payment
that is not one of them is flagged (InvoiceAlreadyPaid), whatever order its events came in.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from typing import Any

from redis.exceptions import LockError

from payhooks.domain.events import WENT_BACK, InvoiceRef, PaymentEvent, PaymentKind
from payhooks.domain.money import exponent
from workers.errors import (
    AmountMismatch,
    InvoiceAlreadyPaid,
    InvoiceNotFound,
    InvoiceNotPayable,
    NexudusPermanentError,
    NexudusThrottled,
    PaymentReversed,
    PermanentError,
    PutNotSent,
    RecordStale,
    TransientError,
)
from workers.invoice_ledger import AppliedPayment, InvoiceLedger, payment_key
from workers.markers import COUNTED, PUT_SENT, SETTLED, InvoiceLock, Markers, TokenState
from workers.nexudus import INVOICES, NexudusClient, Record
from workers.reversals import Reversed, reversal_object

log = logging.getLogger("payhooks.job")

#: A record older than this is read again before it is PUT back.
FRESH_RECORD_SECONDS = 1.0
#: A throttled PUT is retried this often in place, each time on a fresh record.
PUT_TRIES = 3
MAX_INLINE_PUT_WAIT_SECONDS = 30.0


@dataclass(frozen=True, slots=True)
class Outcome:
    # "applied", "partially_paid", "token_only", "already_applied", "reversed",
    # "no_write", "ignored"
    result: str
    invoice_id: int | None = None
    token_id: int | None = None
    token_created: bool = False
    paid_on_set: bool = False
    note: str = ""
    #: Paid events held back by a reversal that no longer counts: to be queued again.
    requeue: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class Verdict(StrEnum):
    SETTLES = "settles"  # with what was applied before, the invoice is paid
    PARTIAL = "partial"  # counted; something is still due
    REFUSED = "refused"  # cannot be counted (another currency, no amount)
    PAID_BY_IT = "paid_by_it"  # the invoice is paid, and this payment was counted on it
    PAID_BY_OTHERS = "paid_by_others"  # paid by other payments we applied: a double payment
    PAID_OUTSIDE = "paid_outside"  # paid, and we applied nothing to it (paid in Nexudus)


@dataclass(frozen=True, slots=True)
class Assessment:
    verdict: Verdict
    #: For the token's Notes, or the failure's reason.
    note: str = ""


def apply_event(
    event: PaymentEvent,
    nexudus: NexudusClient,
    ledger: InvoiceLedger,
    markers: Markers,
    *,
    lock_seconds: int | None = None,
) -> Outcome:
    """``lock_seconds``: how long the calling job may run (its own timeout)."""
    if event.kind is PaymentKind.FAILED:
        return Outcome("no_write", event.invoice.invoice_id, note=f"{event.kind.value} event")
    if event.kind is PaymentKind.REFUNDED:
        return reverse_payment(event, nexudus, ledger, markers, lock_seconds=lock_seconds)
    if event.kind is PaymentKind.REINSTATED:
        return reinstate_payment(event, ledger)
    if event.regular_payment_provider is None:
        raise ValueError("payment provider must be resolved before applying")
    if not event.invoice:
        # Known only once the provider's API was asked (GoCardless): a payment that is
        # not for a Nexudus invoice is none of our business.
        return Outcome("ignored", note="the payment names no Nexudus invoice")

    if event.details.get(WENT_BACK):
        # Recorded as the payment's reversal (its own object, all of it: the one its
        # reversal event, if any, records too), so the payment is held back, and kept to
        # be queued again should the money come back; a retry whose PUT may have landed
        # flags it (workers/reversals.py).
        ledger.reversals.record(
            event.with_changes(
                kind=PaymentKind.REFUNDED, amount=None, currency=None, object_id=event.token
            )
        )
    invoice_id = resolve_invoice_id(event.invoice, nexudus)
    with _locked(markers, invoice_id, lock_seconds, nexudus) as lock:
        try:
            return _Application(event, invoice_id, nexudus, ledger, markers, lock).run()
        except PermanentError:
            # Refused (another currency, a paid or void invoice, ...): the payment stays
            # tied to the invoice only if it was counted there.
            payment = payment_key(event.payment_source, event.token)
            state = markers.token_state(invoice_id, event.payment_source, event.token)
            if not ledger.counts(invoice_id, payment) and not state.counted:
                ledger.unbind_payment(event.payment_source, event.token, invoice_id)
            raise


@contextmanager
def _locked(
    markers: Markers, invoice_id: int, lock_seconds: int | None, nexudus: NexudusClient
) -> Iterator[InvoiceLock]:
    lock = markers.lock(invoice_id, seconds=lock_seconds)
    if not lock.acquire():
        raise TransientError(f"invoice {invoice_id} is locked by another job")
    try:
        yield lock
    finally:
        nexudus.release_reserved()
        try:
            lock.release()
        except LockError:
            log.warning("billing.lock_expired", extra={"invoice_id": invoice_id})


def reverse_payment(
    event: PaymentEvent,
    nexudus: NexudusClient,
    ledger: InvoiceLedger,
    markers: Markers,
    *,
    lock_seconds: int | None = None,
) -> Outcome:
    """Record that a payment's money went back, then see whether it had paid an invoice.

    Recorded first, with no lock and no call, so that it holds even while Nexudus is
    down: the payment's own jobs read it under the invoice's lock before any write. Then,
    under the lock of the invoice the payment is tied to (so after any of its jobs in
    flight), a payment counted on an invoice that is paid is flagged for a person.
    """
    provider, token = event.payment_source, event.token
    ledger.reversals.record(event)
    undone = ledger.reversals.of(provider, token)
    what = undone.describe() if undone is not None else "its money went back"
    # A partial refund leaves the rest of the payment to be counted when its event comes.
    later = (
        "and will not be"
        if undone is None or undone.amount is None
        else "what is left of it, if any, will be"
    )
    invoice_id = ledger.bound_invoice(provider, token)
    if invoice_id is None:
        return Outcome(
            "no_write",
            event.invoice.invoice_id,
            note=f"{event.kind.value} event: {what}; the payment was not applied, {later}",
        )
    with _locked(markers, invoice_id, lock_seconds, nexudus):
        state = markers.token_state(invoice_id, provider, token)
        if not ledger.counts(invoice_id, payment_key(provider, token)) and not state.counted:
            return Outcome(
                "no_write",
                invoice_id,
                note=f"{event.kind.value} event: {what}; the payment was not counted on the "
                f"invoice, {later}",
            )
        invoice = nexudus.get_invoice(invoice_id)
        if invoice is None:
            raise InvoiceNotFound(f"invoice id {invoice_id}")
        if invoice.get("PaidOn"):
            flagged = _flag(ledger, event, undone, invoice_id, what, str(invoice["PaidOn"]))
            return Outcome("no_write", invoice_id, note=f"{event.kind.value} event: {flagged}")
        return Outcome(
            "no_write",
            invoice_id,
            note=f"{event.kind.value} event: {what}; it no longer counts toward the invoice",
        )


def _flag(
    ledger: InvoiceLedger,
    event: PaymentEvent,
    undone: Reversed | None,
    invoice_id: int,
    what: str,
    paid_on: str,
) -> str:
    """Flag a reversal of a payment on a paid invoice (PaymentReversed), unless another
    event of it (the reversal's job, or the payment's retry) flagged it already: the
    note saying so, then."""
    if undone is None:  # reinstated meanwhile: nothing went back any more
        return f"its reversal no longer counts; the invoice is paid (PaidOn {paid_on})"
    earlier = ledger.reversals.claim_flag(event.payment_source, event.token, event.key, undone)
    if earlier is None:
        raise PaymentReversed(invoice_id, event.token, what, paid_on)
    return f"{what}; already flagged for a person by {earlier} (invoice {invoice_id} paid)"


def reinstate_payment(event: PaymentEvent, ledger: InvoiceLedger) -> Outcome:
    """Money that went back came back (a dispute won, a refund failed): its reversal no
    longer counts, and the paid events it held back are queued again (workers/jobs.py),
    so the payment is applied as if it had never gone. No call, no lock: those events
    apply under the invoice's lock as usual."""
    provider, token = event.payment_source, event.token
    ledger.reversals.record(event)
    undone = ledger.reversals.of(provider, token)
    held = tuple(ledger.reversals.held(provider, token))
    notes = [f"{event.kind.value} event: {reversal_object(event)} no longer counts"]
    if undone is not None:
        notes.append(f"still {undone.describe()}")
    flagged = ledger.reversals.flagged_by(provider, token)
    if flagged is not None and undone is None:
        notes.append(f"the PaymentReversed failure of {flagged} is moot: purge it")
    if held:
        notes.append(f"paid events held back, queued again: {', '.join(held)}")
    return Outcome(
        "no_write", ledger.bound_invoice(provider, token), note="; ".join(notes), requeue=held
    )


class _Application:
    """One event applied to one invoice, under that invoice's lock."""

    def __init__(
        self,
        event: PaymentEvent,
        invoice_id: int,
        nexudus: NexudusClient,
        ledger: InvoiceLedger,
        markers: Markers,
        lock: InvoiceLock,
    ) -> None:
        self.event = event
        self.invoice_id = invoice_id
        self.nexudus = nexudus
        self.ledger = ledger
        self.markers = markers
        self.lock = lock
        self.payment = payment_key(event.payment_source, event.token)
        #: What the payment still brings once any money that went back is taken off.
        self.amount = event.amount

    def outcome(self, result: str, token: tuple[int | None, bool], **fields: Any) -> Outcome:
        return Outcome(result, self.invoice_id, token[0], token[1], **fields)

    def run(self) -> Outcome:
        event = self.event
        known = self.markers.token_state(self.invoice_id, event.payment_source, event.token)
        if known.token_id is not None and (known.settled or event.kind is PaymentKind.PENDING):
            # Another event of this payment settled the invoice: nothing to ask Nexudus.
            result = "token_only" if event.kind is PaymentKind.PENDING else "already_applied"
            return self.outcome(result, (known.token_id, False), note="applied by an earlier event")

        # Tied first, read second: a reversal is recorded first and reads the tie second,
        # so one of the two jobs always sees the other (workers/reversals.py).
        self.ledger.bind_payment(event.payment_source, event.token, self.invoice_id)
        remark = self.take_off_reversals()
        if self.amount is not None and self.amount <= 0:
            return self.reversed(known, remark or "")

        paying = event.kind is PaymentKind.PAID
        # The common case's calls, reserved together: GET, POST (unless the token is
        # known), PUT (a paid event usually settles). What is not used is given back.
        post = [True] if known.token_id is None else []
        self.nexudus.reserve(False, *post, *([True] if paying else []))
        invoice, read_at = self.read_invoice()
        paid_on = invoice.get("PaidOn")

        if not paying:
            if paid_on:
                remark = f"the invoice was already paid (PaidOn {paid_on})"
            if paid_on and known.token_id is None:
                known = TokenState(may_exist=True)
            token = self.ensure_token(known, remark)
            return self.outcome("token_only", token, note="payment pending")
        return self.paid(known, invoice, read_at, remark)

    def paid(
        self, known: TokenState, invoice: Record, read_at: float, remark: str | None
    ) -> Outcome:
        """A paid event, on the invoice as just read."""
        event = self.event
        assessment = assess(
            event, invoice, self.ledger.applied(self.invoice_id), self.payment, self.amount
        )
        if remark:
            assessment = Assessment(assessment.verdict, _joined(remark, assessment.note))
        match assessment.verdict:
            case Verdict.PAID_BY_IT:
                # Its token was written by the attempt that counted it; search for it
                # should our marker be gone.
                token = self.ensure_token(
                    known if known.token_id is not None else TokenState(may_exist=True), None
                )
                self.mark(token[0], SETTLED)
                return self.outcome("already_applied", token, note="PaidOn already set")
            case Verdict.PAID_BY_OTHERS:
                self.ensure_token(known, assessment.note)
                raise InvoiceAlreadyPaid(self.invoice_id, event.token, assessment.note)
            case Verdict.PAID_OUTSIDE:
                # Paid in Nexudus itself, or by us before we kept a ledger. Only a search
                # tells whether this payment's token is there; a token we or the search
                # did not find before means a second payment.
                # A marker of ours (even "pending": our POST may have landed) means the
                # token is there because of us, not because Nexudus recorded this payment.
                ours_unsettled = known.token_id is not None or known.may_exist
                token = self.ensure_token(
                    known if ours_unsettled else TokenState(may_exist=True), assessment.note
                )
                if token[1] or ours_unsettled:
                    raise InvoiceAlreadyPaid(self.invoice_id, event.token, assessment.note)
                self.mark(token[0], SETTLED)
                return self.outcome("already_applied", token, note="PaidOn already set")
            case Verdict.REFUSED:
                # Worded to stay true once the invoice is corrected and the job replayed
                # (a replay finds this token and settles without rewriting its note).
                self.ensure_token(known, refused_note(assessment.note))
                raise AmountMismatch(self.invoice_id, assessment.note)
            case Verdict.PARTIAL:
                # Counted, not settled: its later events read the invoice again, as an
                # admin may record the rest in Nexudus or lower the total.
                token = self.ensure_token(known, assessment.note)
                self.count()
                self.mark(token[0], COUNTED)
                return self.outcome("partially_paid", token, note=assessment.note)
        token = self.ensure_token(known, assessment.note or None)
        self.count()
        self.mark(token[0], COUNTED)
        final = self.settle(invoice, read_at, token[0])
        if final.verdict is Verdict.PARTIAL:  # the invoice's total grew meanwhile
            return self.outcome("partially_paid", token, note=final.note)
        self.mark(token[0], SETTLED)
        return self.outcome("applied", token, paid_on_set=True, note=assessment.note)

    def reversed(self, known: TokenState, what: str) -> Outcome:
        """All of the payment went back: nothing more is written for it."""
        event = self.event
        if known.put_sent:
            # A PUT of ours that timed out may have landed after the reversal's job
            # looked (this retry comes after RQ's backoff, for that reason): flag it then.
            invoice, _ = self.read_invoice()
            if invoice.get("PaidOn"):
                undone = self.ledger.reversals.of(event.payment_source, event.token)
                flagged = _flag(
                    self.ledger, event, undone, self.invoice_id, what, str(invoice["PaidOn"])
                )
                return self.outcome("reversed", (known.token_id, False), note=flagged)
        if not self.ledger.counts(self.invoice_id, self.payment):
            self.ledger.unbind_payment(event.payment_source, event.token, self.invoice_id)
        return self.outcome("reversed", (known.token_id, False), note=f"not applied: {what}")

    def take_off_reversals(self) -> str | None:
        """Take the money that went back off the payment's amount (0: all of it); the
        note saying so, if any did."""
        event = self.event
        reversals = self.ledger.reversals
        undone = reversals.of(event.payment_source, event.token)
        if undone is None:
            return None
        # Remembered first, read again second: a reinstatement records first and reads
        # what was held second, so this event is either queued again or sees it.
        reversals.hold(event.payment_source, event.token, event)
        undone = reversals.of(event.payment_source, event.token)
        if undone is None:
            return None
        self.amount = Decimal(0)
        if event.amount is not None:
            self.amount = undone.net(event.amount, event.currency)
        if self.amount <= 0:
            return undone.describe()
        return f"{undone.describe()} before it was applied: {self.amount} counted"

    def read_invoice(self) -> tuple[Record, float]:
        invoice = self.nexudus.get_invoice(self.invoice_id)
        if invoice is None:
            raise InvoiceNotFound(f"invoice id {self.invoice_id}")
        _check_payable(invoice, self.invoice_id)
        return invoice, time.monotonic()

    def count(self) -> None:
        """Count the payment's whole amount: what went back is taken off as it is read."""
        event = self.event
        assert event.amount is not None
        assert event.currency is not None
        self.ledger.record_applied(self.invoice_id, self.payment, event.amount, event.currency)

    def mark(self, token_id: int, stage: str) -> None:
        event = self.event
        self.markers.advance(self.invoice_id, event.payment_source, event.token, token_id, stage)

    def settle(self, invoice: Record, read_at: float, token_id: int) -> Assessment:
        """PUT the invoice with PaidOn, from a record read right before; returns the
        assessment the PUT was made on (PARTIAL when no PUT was due after all)."""
        event = self.event
        paid_on = event.occurred_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        assessment = Assessment(Verdict.SETTLES)
        stale: RecordStale | None = None
        for attempt in range(1, PUT_TRIES + 1):
            if time.monotonic() - read_at > FRESH_RECORD_SECONDS:
                self.nexudus.reserve(False, True)
                invoice, read_at = self.read_invoice()
                applied = self.ledger.applied(self.invoice_id)
                assessment = assess(event, invoice, applied, self.payment, self.amount)
                if assessment.verdict is Verdict.PAID_BY_IT and self.put_sent():
                    # A PUT of ours for this payment was sent before (by this event or
                    # another of the same payment) and may have landed late: PaidOn is
                    # ours, whatever its timestamp says.
                    return assessment
                if assessment.verdict in (
                    Verdict.PAID_BY_IT,  # but by someone else's hand, meanwhile
                    Verdict.PAID_BY_OTHERS,
                    Verdict.PAID_OUTSIDE,
                ):
                    # It did not pay the invoice: it must not be named as a payer.
                    self.ledger.uncount(self.invoice_id, self.payment)
                    self.markers.mark_created(
                        self.invoice_id, event.payment_source, event.token, token_id
                    )
                    raise InvoiceAlreadyPaid(
                        self.invoice_id,
                        event.token,
                        f"it was marked paid meanwhile (PaidOn {invoice.get('PaidOn')}), "
                        "not by this payment",
                    )
                if assessment.verdict is Verdict.REFUSED:
                    raise AmountMismatch(self.invoice_id, assessment.note)
                if assessment.verdict is Verdict.PARTIAL:
                    return assessment
            self.lock.before_write()
            earlier_put = self.put_sent()
            self.mark(token_id, PUT_SENT)
            try:
                # PUT replaces the whole record: send back everything GET gave,
                # changing only PaidOn.
                self.nexudus.put_invoice(
                    {**invoice, "PaidOn": paid_on}, fresh_until=read_at + FRESH_RECORD_SECONDS
                )
                return assessment
            except Exception as exc:
                if not exc_may_have_landed(exc) and not earlier_put:
                    # Not sent, or refused: no PUT of ours can land later.
                    self.markers.reset(
                        self.invoice_id, event.payment_source, event.token, token_id, COUNTED
                    )
                if isinstance(exc, RecordStale):
                    stale = exc
                    read_at = float("-inf")  # the slot or the token came late: read again
                    continue
                if not isinstance(exc, NexudusThrottled):
                    raise
                wait = exc.retry_after or 1.0
                if attempt == PUT_TRIES or wait > MAX_INLINE_PUT_WAIT_SECONDS:
                    raise
                time.sleep(wait)
                read_at = float("-inf")  # the record must be read again after a wait
        assert stale is not None  # the only way out of the loop without a return or raise
        raise _unsent_put(self.invoice_id, stale)

    def put_sent(self) -> bool:
        event = self.event
        return self.markers.token_state(self.invoice_id, event.payment_source, event.token).put_sent

    def ensure_token(self, known: TokenState, remark: str | None) -> tuple[int, bool]:
        """The payment token's id on the invoice, created if needed, and whether it was."""
        event, invoice_id = self.event, self.invoice_id
        if known.token_id is not None:
            return known.token_id, False
        if known.may_exist:
            for record in self.nexudus.search_payment_tokens(invoice_id, event.token):
                # Listings are partial records: the invoice filter was applied by Nexudus,
                # the token is compared exactly here (its filter matches substrings).
                same_invoice = record.get("CoworkerInvoiceId", invoice_id) == invoice_id
                if record.get("Token") == event.token and same_invoice:
                    token_id = int(record["Id"])
                    self.markers.mark_created(
                        invoice_id, event.payment_source, event.token, token_id
                    )
                    return token_id, False

        assert event.regular_payment_provider is not None
        self.lock.before_write()
        self.markers.mark_pending(invoice_id, event.payment_source, event.token)
        try:
            token_id = self.nexudus.create_payment_token(
                invoice_id=invoice_id,
                provider=int(event.regular_payment_provider),
                token=event.token,
                notes=token_notes(event, remark),
            )
        except NexudusPermanentError as exc:
            # A 4xx is Nexudus saying no: nothing was written. Anything else (a timeout, a
            # 5xx, a 200 we cannot read) may have written, so the marker stays "pending"
            # and the next attempt searches first.
            if exc.status is not None and 400 <= exc.status < 500:
                self.markers.forget(invoice_id, event.payment_source, event.token)
            raise
        self.markers.mark_created(invoice_id, event.payment_source, event.token, token_id)
        return token_id, True


def resolve_invoice_id(ref: InvoiceRef, nexudus: NexudusClient) -> int:
    if ref.invoice_id is not None:
        return ref.invoice_id
    number = ref.number or ""
    # Nexudus string filters may match substrings: compare exactly on our side.
    for field in ("InvoiceNumber", "PaymentReference"):
        records = nexudus.search_invoices({f"CoworkerInvoice_{field}": number})
        matches = [
            r
            for r in records
            if str(r.get(field) or "") == number and not r.get("CreditNote") and not r.get("Void")
        ]
        ids = sorted({int(r["Id"]) for r in matches if isinstance(r.get("Id"), int)})
        if len(ids) == 1:
            return ids[0]
        if len(ids) > 1:
            raise InvoiceNotPayable(
                f"{len(ids)} invoices have {field} {number!r} (ids {ids}); "
                "put the invoice id in the payment's metadata"
            )
    raise InvoiceNotFound(ref.describe())


def _check_payable(invoice: Record, invoice_id: int) -> None:
    if invoice.get("Void"):
        raise InvoiceNotPayable(f"invoice {invoice_id} is void")
    if invoice.get("CreditNote"):
        raise InvoiceNotPayable(f"invoice {invoice_id} is a credit note")


def assess(
    event: PaymentEvent,
    invoice: Record,
    applied: dict[str, AppliedPayment],
    payment: str,
    amount: Decimal | None,
) -> Assessment:
    """What a paid event bringing ``amount`` (its own, less any refund) does to the
    invoice, given the payments already counted on it.

    Pure: the invoice record and the ledger in, a verdict and a note out.
    """
    paid_on = invoice.get("PaidOn")
    if paid_on:
        if payment in applied:
            return Assessment(Verdict.PAID_BY_IT)
        others = sorted(name.partition(":")[2] for name in applied)
        if others:
            return Assessment(
                Verdict.PAID_BY_OTHERS,
                f"the invoice was already paid (PaidOn {paid_on}) by {', '.join(others)}",
            )
        return Assessment(Verdict.PAID_OUTSIDE, f"the invoice was already paid (PaidOn {paid_on})")

    invoice_currency = str(invoice.get("CurrencyCode") or "").upper()
    if not invoice_currency:
        return Assessment(Verdict.REFUSED, "the invoice has no CurrencyCode to compare with")
    if event.currency != invoice_currency:
        return Assessment(
            Verdict.REFUSED,
            f"payment currency {event.currency} differs from the invoice's {invoice_currency}",
        )
    if amount is None:
        return Assessment(Verdict.REFUSED, "the payment carries no amount")
    try:
        total = Decimal(str(invoice.get("TotalAmount") or 0))
        paid = Decimal(str(invoice.get("PaidAmount") or 0))
    except InvalidOperation:
        return Assessment(
            Verdict.REFUSED, "the invoice's TotalAmount or PaidAmount is not a number"
        )
    places = Decimal(1).scaleb(-exponent(invoice_currency))
    earlier = sum(
        (
            p.amount
            for name, p in applied.items()
            if name != payment and p.currency == event.currency
        ),
        Decimal(0),
    )
    outstanding = (total - paid - earlier).quantize(places)
    if outstanding <= 0 and payment not in applied:
        # Paid in full by payments counted before, whose PUT has not landed yet: this
        # one is a second payment, not an overpayment.
        return Assessment(Verdict.PAID_BY_OTHERS, _paid_in_full(applied, paid, total))
    amount = amount.quantize(places)
    running = (paid + earlier + amount).quantize(places)
    due = outstanding - amount
    if due > 0:
        return Assessment(
            Verdict.PARTIAL,
            f"partial payment: running total {running} of {total.quantize(places)} "
            f"{invoice_currency}, {due} still due",
        )
    if amount > outstanding:
        return Assessment(
            Verdict.SETTLES,
            f"overpaid: {amount} {invoice_currency} for {outstanding} outstanding",
        )
    if earlier:
        return Assessment(
            Verdict.SETTLES,
            f"running total {running} of {total.quantize(places)} {invoice_currency}, settled",
        )
    return Assessment(Verdict.SETTLES)


def _paid_in_full(applied: dict[str, AppliedPayment], paid: Decimal, total: Decimal) -> str:
    """Why an invoice without PaidOn is paid already: a double payment caught early."""
    payers = sorted(name.partition(":")[2] for name in applied)
    if not payers:
        return (
            f"the invoice is already paid in full in Nexudus (PaidAmount {paid} of "
            f"TotalAmount {total}), though PaidOn is not set"
        )
    return (
        f"the invoice is already paid in full by {', '.join(payers)} (counted by payhooks; "
        "PaidOn not set in Nexudus yet)"
    )


def _joined(*notes: str) -> str:
    return "; ".join(note for note in notes if note)


def exc_may_have_landed(exc: BaseException) -> bool:
    return bool(getattr(exc, "write_may_have_landed", False))


def _unsent_put(invoice_id: int, stale: RecordStale) -> Exception:
    """What PUT_TRIES stale records in a row mean, named for the person reading it."""
    if stale.unauthorised:
        return NexudusPermanentError(
            f"invoice {invoice_id} not marked paid: {stale}",
            method="PUT",
            path=INVOICES,
            status=401,
        )
    return PutNotSent(
        f"invoice {invoice_id} not marked paid yet: {PUT_TRIES} times the record to PUT was "
        f"over {FRESH_RECORD_SECONDS:g} s old by the time it could be sent; the last time "
        f"{stale}. Nothing was written; the job will run again"
    )


def refused_note(reason: str) -> str:
    """The note of a token recorded without marking the invoice paid."""
    return (
        f"not marked paid when this token was recorded: {reason} "
        "(a replay after the invoice is corrected marks it paid)"
    )


def token_notes(event: PaymentEvent, remark: str | None) -> str:
    parts = [f"payhooks: {event.provider} {event.event_type} {event.event_id}"]
    if event.payment_method:
        parts.append(f"method {event.payment_method}")
    if event.amount is not None:
        places = Decimal(1).scaleb(-exponent(event.currency or ""))
        parts.append(f"{event.amount.quantize(places)} {event.currency}")
    for name, value in sorted(event.details.items()):
        if name != "livemode":
            parts.append(f"{name} {value}")
    if event.kind is PaymentKind.PENDING:
        parts.append("payment pending")
    if remark:
        parts.append(remark)
    return "; ".join(parts)
