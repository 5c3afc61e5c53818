"""The audit: what providers say was paid, held against what Nexudus and our own records say.

Each provider's lister (payhooks/providers/listers.py) reads its own record of a window,
as reconciliation does, and every paid event naming a Nexudus invoice is one payment to
check: is its token on the invoice (the token search, compared exactly) and is the
invoice's PaidOn set, or counted as a partial payment? If not, is there a recorded reason
(the trail: a guard that failed its job, money that went back, a job still running) or
none at all (a payment we never received, or one Nexudus lost)? What a person must look
at is a finding with what to do; the rest is counted.

It reads Nexudus through the workers' own limiter (the same Redis windows, so the audit
and the workers together stay under Nexudus's limits), plus a window of its own holding
it to AUDIT_CALL_SHARE of the calls a minute: a long audit slows down, it never starves
the workers. It writes nothing anywhere.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from typing import Any

from redis import Redis
from redis.exceptions import RedisError
from rq.exceptions import NoSuchJobError
from rq.job import Job

from payhooks.domain.events import PaymentEvent, PaymentKind
from payhooks.providers.kit.listing import ConfirmsFromList, Lister, Window
from payhooks.providers.kit.receiver_errors import MalformedPayload
from payhooks.storage import redis_keys
from payhooks.storage.record_once import Seen, seen_before
from payhooks.storage.trail import Trail, unreadable
from payhooks.storage.unapplied import OVERDUE_AFTER_SECONDS
from workers.apply import resolve_invoice_id
from workers.errors import JobError
from workers.invoice_ledger import InvoiceLedger, payment_key
from workers.nexudus import NexudusClient, Record
from workers.reconcile import fetch_patiently
from workers.reversals import Reversed, reversal_object

#: The share of NEXUDUS_CALLS_PER_MINUTE an audit may take; the rest is the workers'.
AUDIT_CALL_SHARE = 0.5

#: What a job's run wrote last, by what it means for the payment.
_DONE = frozenset({"applied", "partially_paid", "already_applied"})
_NOT_OURS = frozenset({"ignored", "no_write", "token_only", "reversed"})


class Status(StrEnum):
    APPLIED = "applied"  # its token on the invoice, PaidOn set
    PARTIAL = "partial"  # its token on the invoice, counted, the invoice still due
    REVERSED = "reversed"  # its money went back: not to be applied
    NOT_OURS = "not_ours"  # its job found no Nexudus invoice for it, or was ignored
    HANDLED = "handled"  # its failed job was purged by a person
    IN_FLIGHT = "in_flight"  # queued or retrying, paid less than 30 minutes ago
    # Discrepancies: a person must look.
    NEVER_RECEIVED = "never_received"  # no webhook, poll or scan ever recorded it
    HELD = "held"  # a guard failed its job: the reason is recorded
    OVERDUE = "overdue"  # queued or retrying, paid more than 30 minutes ago
    MISSING = "missing"  # our records say applied; Nexudus does not show it
    UNCHECKED = "unchecked"  # Nexudus could not be read for it
    UNREADABLE = "unreadable"  # a trail entry of its events cannot be read


DISCREPANCIES = frozenset(
    {
        Status.NEVER_RECEIVED,
        Status.HELD,
        Status.OVERDUE,
        Status.MISSING,
        Status.UNCHECKED,
        Status.UNREADABLE,
    }
)
#: Verdicts Nexudus itself confirms (the token on the invoice), whatever a damaged trail
#: entry said: the rest rest on our records, so one that cannot be read leaves them open.
_CONFIRMED_BY_NEXUDUS = frozenset({Status.APPLIED, Status.PARTIAL})

#: What to do about a guard's failure, by its error class.
_GUARD_ACTIONS = {
    "AmountMismatch": "correct the invoice (amount, currency) and `payhooks failed replay`, "
    "or refund the member; `payhooks failed purge` once handled",
    "InvoiceAlreadyPaid": "a double payment: refund one (README, Replaying), then purge",
    "InvoiceNotPayable": "the invoice is void, a credit note or not unique: correct the "
    "match and replay, or refund",
    "InvoiceNotFound": "create or correct the invoice, then `payhooks failed replay`",
    "PaymentReversed": "reopen the invoice in Nexudus or recover the money, then purge",
}


@dataclass(frozen=True, slots=True)
class Finding:
    """One payment's verdict; a discrepancy says why and what to do."""

    provider: str
    event: str  # the event key (as `payhooks trace` takes it)
    invoice: str
    amount: str
    status: Status
    why: str = ""
    action: str = ""

    @property
    def discrepancy(self) -> bool:
        return self.status in DISCREPANCIES

    def as_dict(self) -> dict[str, str]:
        return {
            "provider": self.provider,
            "event": self.event,
            "invoice": self.invoice,
            "amount": self.amount,
            "status": self.status.value,
            "why": self.why,
            "action": self.action,
        }


@dataclass
class ProviderAudit:
    """What one provider's list held, and how reading it ended."""

    name: str
    listed: int = 0  # records read
    payments: int = 0  # paid payments naming (or bound to) a Nexudus invoice
    unreadable: int = 0
    result: str = "ok"


@dataclass
class AuditReport:
    window: Window
    providers: list[ProviderAudit] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    nexudus_calls: int = 0

    @property
    def discrepancies(self) -> list[Finding]:
        return [f for f in self.findings if f.discrepancy]

    def counts(self) -> dict[str, int]:
        counted = {status.value: 0 for status in Status}
        for finding in self.findings:
            counted[finding.status.value] += 1
        return counted

    @property
    def clean(self) -> bool:
        return not self.discrepancies and all(p.result == "ok" for p in self.providers)


@dataclass(frozen=True, slots=True)
class _Payment:
    """A paid payment as its provider listed it: its first paid event stands for it."""

    event: PaymentEvent
    keys: tuple[str, ...]
    #: Its refunds the same list holds (one event per refund, none the list says failed).
    refunds: tuple[PaymentEvent, ...] = ()


class _Listed:
    """A list's paid events by payment, with the refunds it holds of each (a refund the
    list also says failed or was voided, REINSTATED, left out)."""

    def __init__(self) -> None:
        self._paid: dict[tuple[str, str], list[PaymentEvent]] = {}
        self._refunds: dict[tuple[str, str], dict[str, PaymentEvent]] = {}
        self._undone: set[tuple[str, str, str]] = set()

    def add(self, event: PaymentEvent) -> None:
        payment = (event.payment_source, event.token)
        if event.kind is PaymentKind.PAID:
            self._paid.setdefault(payment, []).append(event)
        elif event.kind is PaymentKind.REFUNDED:
            self._refunds.setdefault(payment, {})[reversal_object(event)] = event
        elif event.kind is PaymentKind.REINSTATED:
            self._undone.add((*payment, reversal_object(event)))

    def payments(self) -> Iterator[_Payment]:
        for payment, events in self._paid.items():
            refunds = self._refunds.get(payment, {})
            back = tuple(r for name, r in refunds.items() if (*payment, name) not in self._undone)
            yield _Payment(events[0], tuple(event.key for event in events), back)


class Auditor:
    def __init__(
        self,
        nexudus: NexudusClient,
        redis: Redis,
        trail: Trail,
        *,
        now: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._nexudus = nexudus
        self._redis = redis
        self._trail = trail
        self._ledger = InvoiceLedger(redis)
        self._now = now
        self._sleep = sleep
        self._invoices: dict[int, Record | None] = {}

    def audit(self, listers: Iterable[Lister], window: Window) -> AuditReport:
        report = AuditReport(window)
        for lister in listers:
            done = ProviderAudit(lister.name)
            report.providers.append(done)
            try:
                payments = list(self._paid(lister, window, done))
            except JobError as exc:  # the provider's API unavailable or refusing us
                done.result = f"not read: {exc}"
                continue
            done.payments = len(payments)
            report.findings += self._check_all(payments)
        return report

    # -- what the provider says was paid ----------------------------------------------

    def _paid(self, lister: Lister, window: Window, done: ProviderAudit) -> Iterator[_Payment]:
        listed = _Listed()
        cursor: str | None = None
        while True:
            page = fetch_patiently(lister, window, cursor, thorough=True, sleep=self._sleep)
            for body in page.records:
                done.listed += 1
                try:
                    normalised = lister.normalise(body)
                except (MalformedPayload, ValueError):
                    done.unreadable += 1
                    continue
                for item in normalised:
                    if (
                        isinstance(item, PaymentEvent)
                        and item.kind is not PaymentKind.PAID
                        and isinstance(lister, ConfirmsFromList)
                    ):
                        # A hint (Spreedly's "changed"): the listed record says what it is.
                        item = lister.confirm(body, item) or item
                    if isinstance(item, PaymentEvent):
                        listed.add(item)
            cursor = page.cursor
            if not page.more:
                break
        if done.unreadable:
            done.result = f"{done.unreadable} record(s) unreadable: `payhooks reconcile` says which"
        yield from listed.payments()

    # -- what we and Nexudus say ------------------------------------------------------

    def _check_all(self, payments: list[_Payment]) -> list[Finding]:
        answers = seen_before(
            self._redis,
            [key for p in payments for key in (*p.keys, *(r.key for r in p.refunds))],
        )
        findings, start = [], 0
        for payment in payments:
            end = start + len(payment.keys)
            refunds_end = end + len(payment.refunds)
            refunds_seen = [seen is Seen.YES for seen in answers[end:refunds_end]]
            unseen = self._unseen(payment, refunds_seen)
            was_recorded = any(seen is Seen.YES for seen in answers[start:end])
            histories = {key: self._trail.history(key) for key in payment.keys}
            finding = self._refunds_unseen(payment, was_recorded, unseen) or self._check(
                payment, was_recorded, histories
            )
            damaged = [key for key, history in histories.items() if unreadable(history)] + [
                refund.key
                for refund, seen in zip(payment.refunds, answers[end:refunds_end], strict=True)
                if seen is Seen.UNREADABLE
            ]
            findings.append(_unreadable(finding, damaged) if damaged else finding)
            start = refunds_end
        return findings

    def _unseen(self, payment: _Payment, seen: list[bool]) -> tuple[PaymentEvent, ...]:
        """The payment's listed refunds that never reached us: neither their event (by its
        key) nor their reversal (by its object, as a notification keyed otherwise, an
        Authorize.Net one, recorded it)."""
        unseen = tuple(r for r, was in zip(payment.refunds, seen, strict=True) if not was)
        if not unseen:
            return ()
        event = payment.event
        known = self._ledger.reversals.recorded_objects(event.payment_source, event.token)
        return tuple(refund for refund in unseen if reversal_object(refund) not in known)

    def _refunds_unseen(
        self, payment: _Payment, was_recorded: bool, unseen: tuple[PaymentEvent, ...]
    ) -> Finding | None:
        """The verdict on a payment whose refunds the list holds and no webhook, poll or
        scan brought (Braintree notifies none): refunded in full before either reached
        us, nothing is to be applied; otherwise, received, we still count what went back."""
        if not unseen:
            return None
        event = payment.event
        invoice_id = event.invoice.invoice_id or self._ledger.bound_invoice(
            event.payment_source, event.token
        )
        base = {
            "provider": event.provider,
            "event": event.key,
            "invoice": str(invoice_id) if invoice_id is not None else _invoice_text(event),
            "amount": f"{event.amount} {event.currency}" if event.amount is not None else "-",
        }
        keys = ", ".join(refund.key for refund in unseen)
        amounts = [refund.amount for refund in payment.refunds if refund.currency == event.currency]
        # Received under a key no list gives back (an Authorize.Net notification's id) is
        # received all the same: our ledger counted it.
        received = was_recorded or (
            invoice_id is not None
            and self._ledger.counts(invoice_id, payment_key(event.payment_source, event.token))
        )
        if not received:
            if (
                event.amount is not None
                and len(amounts) == len(payment.refunds)
                and None not in amounts
                and sum((a for a in amounts if a is not None), Decimal(0)) >= event.amount
            ):
                why = f"refunded in full at the provider ({keys}) before anything reached us"
                return Finding(**base, status=Status.REVERSED, why=why)
            return None  # a payment never received: its refunds come with it
        return Finding(
            **{**base, "event": unseen[0].key},
            status=Status.NEVER_RECEIVED,
            why=f"refunded at the provider ({keys}); no webhook, poll or scan brought the "
            f"refund, so payhooks still counts {event.key}",
            action=f"`payhooks reconcile {event.provider} --since ...` over its time",
        )

    def _check(
        self, payment: _Payment, was_recorded: bool, histories: dict[str, list[dict[str, Any]]]
    ) -> Finding:
        event = payment.event
        source, token = event.payment_source, event.token
        invoice_id = event.invoice.invoice_id or self._ledger.bound_invoice(source, token)
        base = {
            "provider": event.provider,
            "event": event.key,
            "invoice": str(invoice_id) if invoice_id is not None else _invoice_text(event),
            "amount": f"{event.amount} {event.currency}" if event.amount is not None else "-",
        }
        last = _last_outcome(histories.values())
        settled = self._settled_by_our_records(event, last, base)
        if settled is not None:
            return settled
        stage = str(last.get("stage", "")) if last else ""
        if invoice_id is None and not event.invoice:
            # Known only once the provider's API is asked (the job's step): unchecked
            # unless it never reached us at all.
            if not was_recorded:
                return self._never_received(base, event, None)
            return self._in_flight(base, event, last)
        try:
            if invoice_id is None:
                invoice_id = resolve_invoice_id(event.invoice, self._nexudus)
                base["invoice"] = str(invoice_id)
            invoice = self._invoice(invoice_id)
            on_invoice = invoice is not None and any(
                str(record.get("Token")) == token
                for record in self._nexudus.search_payment_tokens(invoice_id, token)
            )
        except JobError as exc:
            return Finding(
                **base,
                status=Status.UNCHECKED,
                why=f"could not read Nexudus: {exc}",
                action="run the audit again",
            )
        # A payment our ledger counted may have been applied under an event key no list
        # gives back (an Authorize.Net notification's id, a Forte sale's earlier status),
        # which the listed event's own records know nothing of. Not counted, its token on
        # a paid invoice may be a double payment's, held under such a key: not applied.
        paid_on = invoice.get("PaidOn") if invoice is not None else None
        counted = self._ledger.counts(invoice_id, payment_key(source, token))
        if on_invoice and paid_on and (was_recorded or counted):
            return Finding(**base, status=Status.APPLIED)
        if on_invoice and counted and invoice is not None and self._still_due(invoice_id, invoice):
            return Finding(**base, status=Status.PARTIAL, why="counted; the invoice is still due")
        if not was_recorded:
            return self._never_received(base, event, invoice)
        if stage in _DONE:
            missing = (
                "the invoice" if invoice is None else ("its token" if not on_invoice else "PaidOn")
            )
            return Finding(
                **base,
                status=Status.MISSING,
                why=f"our trail says {stage}, but Nexudus shows no {missing}",
                action="check the invoice in Nexudus (changed by hand?); `payhooks trace "
                f"{event.key}` shows what we did",
            )
        return self._in_flight(base, event, last)

    def _failed_on(self, event_key: str) -> int | None:
        """The invoice the event's failed job was working on (its failure's record), if
        the job is still kept."""
        try:
            job = Job.fetch(redis_keys.job_id(event_key), connection=self._redis)
        except (NoSuchJobError, RedisError):
            return None
        value = str((job.meta.get("failure") or {}).get("invoice_id"))
        return int(value) if value.isdigit() else None

    def _settled_by_our_records(
        self, event: PaymentEvent, last: dict[str, Any] | None, base: dict[str, Any]
    ) -> Finding | None:
        """A verdict our records give without asking Nexudus: money that went back, a
        guard's (or any) failure, a purge, a job that found the payment none of ours."""
        undone = self._ledger.reversals.of(event.payment_source, event.token)
        if undone is not None and self._all_went_back(event, undone):
            return Finding(**base, status=Status.REVERSED, why=undone.describe())
        stage = str(last.get("stage", "")) if last else ""
        if last is not None and stage == "failed":
            error_class = str(last.get("error_class"))
            action = _GUARD_ACTIONS.get(error_class, f"`payhooks failed show {event.key}`")
            why = f"{error_class}: {last.get('reason')}"
            held_on = self._failed_on(event.key)
            if held_on is not None and event.invoice.invoice_id is None:
                base = {**base, "invoice": str(held_on)}  # the invoice its job found
            return Finding(**base, status=Status.HELD, why=why, action=action)
        if stage == "purged":
            return Finding(**base, status=Status.HANDLED, why="its failed job was purged")
        if stage in _NOT_OURS:
            return Finding(**base, status=Status.NOT_OURS, why=f"its job's outcome: {stage}")
        return None

    def _all_went_back(self, event: PaymentEvent, undone: Reversed) -> bool:
        """Whether nothing of the payment is left to apply. Many lists carry no amount
        (GoCardless's events, Authorize.Net's, Forte's, Spreedly's: the job reads it), so
        the amount is the event's, else the one our ledger counted; a partial reversal of
        a payment whose amount neither knows leaves it to be checked, never "reversed"."""
        if undone.amount is None:
            return True  # all of it, or another currency's
        invoice_id = event.invoice.invoice_id or self._ledger.bound_invoice(
            event.payment_source, event.token
        )
        counted = (
            None
            if invoice_id is None
            else self._ledger.counted(invoice_id, payment_key(event.payment_source, event.token))
        )
        if event.amount is not None:
            amount, currency = event.amount, event.currency
        elif counted is not None:
            amount, currency = counted.amount, counted.currency
        else:
            return False
        return undone.net(amount, currency) <= 0

    def _never_received(
        self, base: dict[str, Any], event: PaymentEvent, invoice: Record | None
    ) -> Finding:
        why = "paid at the provider; no webhook, poll or scan ever brought it"
        if invoice is not None and invoice.get("PaidOn"):
            why += f"; the invoice is marked paid (PaidOn {invoice['PaidOn']}) without it"
        return Finding(
            **base,
            status=Status.NEVER_RECEIVED,
            why=why,
            action=f"`payhooks reconcile {event.provider} --since ...` over its time",
        )

    def _in_flight(
        self, base: dict[str, Any], event: PaymentEvent, last: dict[str, Any] | None
    ) -> Finding:
        age = self._now() - event.occurred_at.timestamp()
        doing = "its job is queued"
        if last is not None and last.get("stage") == "retrying":
            doing = f"its job is retrying ({last.get('error_class')}: {last.get('reason')})"
        if age < OVERDUE_AFTER_SECONDS:
            return Finding(**base, status=Status.IN_FLIGHT, why=doing)
        return Finding(
            **base,
            status=Status.OVERDUE,
            why=f"paid {age / 60:.0f} min ago and not applied: {doing}",
            action=f"are workers running? `payhooks failed show {event.key}`",
        )

    def _still_due(self, invoice_id: int, invoice: Record) -> bool:
        """Whether what was paid in Nexudus and what we counted leave something due (a
        partial payment), rather than an invoice whose PaidOn should have been set."""
        currency = str(invoice.get("CurrencyCode") or "").upper()
        try:
            total = Decimal(str(invoice.get("TotalAmount") or 0))
            paid = Decimal(str(invoice.get("PaidAmount") or 0))
        except InvalidOperation:
            return False
        counted = sum(
            (p.amount for p in self._ledger.applied(invoice_id).values() if p.currency == currency),
            Decimal(0),
        )
        return total - paid - counted > 0

    def _invoice(self, invoice_id: int) -> Record | None:
        if invoice_id not in self._invoices:
            self._invoices[invoice_id] = self._nexudus.get_invoice(invoice_id)
        return self._invoices[invoice_id]


def _last_outcome(histories: Iterable[list[dict[str, Any]]]) -> dict[str, Any] | None:
    """The latest entry, across the payment's events, that says how its job ended or is
    going (a run's outcome, a retry, a purge, a replay: queued again)."""
    entries = [
        entry
        for history in histories
        for entry in history
        if entry.get("stage") in _DONE | _NOT_OURS | {"failed", "purged", "retrying", "replayed"}
    ]
    return max(entries, key=lambda entry: str(entry.get("at", ""))) if entries else None


def _unreadable(finding: Finding, damaged: list[str]) -> Finding:
    """A finding whose events' trails hold an entry that cannot be read (which might have
    been the outcome, or the record that the payment or its refund came): unless Nexudus
    itself confirms it, its verdict is left to a person, who is told what it would be."""
    if finding.status in _CONFIRMED_BY_NEXUDUS:
        return finding
    said = f"{finding.status.value.replace('_', ' ')}" + (f": {finding.why}" if finding.why else "")
    return replace(
        finding,
        status=Status.UNREADABLE,
        why=f"the trail of {', '.join(damaged)} holds an entry that cannot be read; without "
        f"it, {said}",
        action=f"`payhooks trace {damaged[0]}` shows it; decide by the provider's and "
        "Nexudus's records",
    )


def _invoice_text(event: PaymentEvent) -> str:
    return event.invoice.number or "unknown (the provider's API says, once it is applied)"
