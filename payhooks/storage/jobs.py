"""How a payment event becomes an ordinary RQ job (shared by the receiver and replays).

The job's fields come from RQ's own ``Job.create(...).to_dict()``, so RQ's workers,
registries, CLI and rq-dashboard understand it. It calls ``apply_payment_event`` with no
argument: the event travels in the job's own hash, beside RQ's fields, in a few small
fields (``event`` its key, ``e.type``, ``e.token``, ``e`` its short values, …;
``event_fields``). Plain text, never a pickled object, and no separate copy: the job is
the event's only record besides the webhook's body. Every value stays under Redis's
64-byte listpack limit as a rule, so the hash is kept compact (a hash with one longer
value takes about four times the memory); the description is short for the same reason.
Each field costs the shared Redis CPU per event (a compact hash is searched whole for
each field set, and the AOF and every replica get each one), so RQ's fields that it
writes empty are left out, and so are the event's that say nothing new. Jobs queued by
0.1.0 carry the event key as their argument and the event in ``payhooks:event:<key>``;
jobs queued up to issue 21's fourth pass hold a field per event value; the worker
reads all three.

Building a Job per webhook costs about as much as everything else the receiver does,
and almost all of its fields are the same for every job. So a template job is built
once, at start-up, and only the fields that differ between jobs are computed per event.
``full_mapping`` gives the whole hash as RQ writes it, and a test holds the job RQ
fetches from ours equal to it.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any, NamedTuple

import orjson
from redis import Redis
from rq import Queue, Retry
from rq.job import Job, JobStatus
from rq.utils import now

from payhooks.domain.events import InvoiceRef, PaymentEvent, PaymentKind, RegularPaymentProvider
from payhooks.logs import utc_text
from payhooks.settings import Settings
from payhooks.storage import redis_keys
from payhooks.storage.redis_keys import text

JOB_FUNCTION = "workers.jobs.apply_payment_event"
#: How long a finished job and its result stay: a second. The outcome is in the event's
#: trail for the retention period, which `trace`, `failed show` and the dedupe read; RQ's
#: result stream alone took about 4.7 KB per job (a stream's first node), more than twice
#: the webhook's body. Not 0: RQ then deletes the job as it finishes, and RQ 2.12 cannot
#: delete a job whose earlier run was abandoned (a killed worker's execution, expired,
#: is still in its registry: Execution.fetch raises), so the applied job failed and was
#: run again on every retry. With a TTL, RQ lets the job and its result expire instead.
#: Failed jobs are kept by ``failure_ttl`` (FAILED_JOB_RETENTION_DAYS) as before.
RESULT_TTL_SECONDS = 1
#: Fields that differ from one job to the next; every other field is the template's.
VARIABLE_FIELDS = ("data", "description", "created_at", "enqueued_at")
#: A description longer than this many bytes is cut (a longer value would unpack the whole
#: hash: Redis's compact encoding holds values of at most 64 bytes, not characters).
DESCRIPTION_BYTES = 64
_ELLIPSIS = "…"
#: The job hash field holding the event key (the rest of the event: ``e`` and ``e.*``).
EVENT_FIELD = "event"
#: The field holding the event's short values, one JSON array (``_PACKED``): each was a
#: field of its own (``e.kind``, ``e.amount``, …) up to issue 21's fourth pass, and
#: together they stay well under the 64 bytes of a compact hash's value.
PACKED_FIELD = "e"
_PACKED = ("e.kind", "e.amount", "e.currency", "e.invoice_id", "e.rpp")


class JobFields(NamedTuple):
    """Made once per event: a named tuple is made in half the time of a frozen dataclass."""

    job_id: str
    job_key: str
    data: bytes
    description: str
    timestamp: str


def utc_timestamp() -> str:
    """Now, as RQ writes a job's created_at and enqueued_at (``utcformat(now())``)."""
    return utc_text(time.time(), 6)


def short_description(event: PaymentEvent, note: str = "") -> str:
    text_ = f"{event.provider} {event.event_type} {event.event_id}{note}"
    encoded = text_.encode()
    if len(encoded) <= DESCRIPTION_BYTES:
        return text_
    room = DESCRIPTION_BYTES - len(_ELLIPSIS.encode())
    # A character cut in two is dropped whole.
    return encoded[:room].decode(errors="ignore") + _ELLIPSIS


def event_fields(event: PaymentEvent) -> dict[str, str]:
    """The event as the job hash holds it; absent values are left out, and so is the
    object when it is the token (as a Stripe PaymentIntent's is)."""
    invoice_id = event.invoice.invoice_id
    rpp = event.regular_payment_provider
    fields = {
        EVENT_FIELD: event.key,
        "e.type": event.event_type,
        "e.token": event.token,
        "e.at": event.occurred_at.isoformat(),
        PACKED_FIELD: orjson.dumps(
            [
                event.kind.value,
                None if event.amount is None else str(event.amount),
                event.currency,
                invoice_id,
                None if rpp is None else int(rpp),
            ]
        ).decode(),
    }
    if event.object_id != event.token:
        fields["e.object"] = event.object_id
    if event.invoice.number is not None:
        fields["e.number"] = event.invoice.number
    if event.payment_method is not None:
        fields["e.method"] = event.payment_method
    if event.details:
        fields["e.details"] = orjson.dumps(event.details).decode()
    return fields


#: Every field a job's event is held in, now or by jobs queued before (a field per value).
_EVENT_FIELD_NAMES = (
    EVENT_FIELD,
    PACKED_FIELD,
    *_PACKED,
    "e.type",
    "e.token",
    "e.at",
    "e.object",
    "e.number",
    "e.method",
    "e.details",
)


def replace_event(redis: Redis, job_key: str, event: PaymentEvent) -> None:
    """Write ``event`` over the one a queued job holds, whole: absent values are not
    written (nor the object when it is the token), and a job queued before issue 21's
    fourth pass holds a field per value, so an old field left beside the new ones would be
    read back as part of the event. One transaction: a worker reads the one or the other."""
    with redis.pipeline() as pipe:
        pipe.hdel(job_key, *_EVENT_FIELD_NAMES)
        pipe.hset(job_key, mapping=event_fields(event))  # type: ignore[arg-type]
        pipe.execute()


def event_from_fields(raw: Mapping[Any, Any]) -> PaymentEvent | None:
    """The event a job hash holds (``event_fields``, or as jobs queued before issue 21's
    fourth pass held it: a field per value), or None if it holds none (a job queued by
    0.1.0, or one whose hash has expired)."""
    named = ((text(k), v) for k, v in raw.items())
    fields = {k: text(v) for k, v in named if k in (EVENT_FIELD, PACKED_FIELD) or k[:2] == "e."}
    key = fields.get(EVENT_FIELD)
    if key is None:
        return None
    packed = fields.get(PACKED_FIELD)
    if packed is not None:
        fields.update(
            (name, str(value))
            for name, value in zip(_PACKED, orjson.loads(packed), strict=True)
            if value is not None
        )
    provider, _, event_id = key.partition(":")
    invoice_id = fields.get("e.invoice_id")
    rpp = fields.get("e.rpp")
    amount = fields.get("e.amount")
    details = fields.get("e.details")
    return PaymentEvent(
        provider=provider,
        event_id=event_id,
        event_type=fields["e.type"],
        kind=PaymentKind(fields["e.kind"]),
        token=fields["e.token"],
        invoice=InvoiceRef(
            invoice_id=None if invoice_id is None else int(invoice_id),
            number=fields.get("e.number"),
        ),
        amount=None if amount is None else Decimal(amount),
        currency=fields.get("e.currency"),
        occurred_at=datetime.fromisoformat(fields["e.at"]),
        object_id=fields.get("e.object", fields["e.token"]),
        regular_payment_provider=None if rpp is None else RegularPaymentProvider(int(rpp)),
        payment_method=fields.get("e.method"),
        details=dict(orjson.loads(details)) if details else {},
    )


def queued_event(redis: Redis, event_key: str) -> PaymentEvent | None:
    """The event as its job holds it (or, queued by 0.1.0, as stored apart)."""
    held = event_from_fields(redis.hgetall(Job.key_for(redis_keys.job_id(event_key))))
    if held is not None:
        return held
    raw = redis.get(redis_keys.event(event_key))
    return None if raw is None else PaymentEvent.from_json(raw)


def event_key_of(job: Job) -> str | None:
    """The event a job applies: its argument (0.1.0), or its ``event`` field. Job ids
    are never turned back into keys."""
    if job.args:
        return str(job.args[0])
    found = job.connection.hget(job.key, EVENT_FIELD)
    return None if found is None else text(found)


class JobFactory:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self.queue_name = settings.queue_name
        self.queue_key = f"rq:queue:{settings.queue_name}"
        template = self.create("template:0", "template")
        self._serializer = template.serializer
        #: What every job's data is: the function, called with no argument (its event is in
        #: its hash). Uncompressed: RQ reads data that is not zlib's as it is, and a
        #: payload this small only grows when compressed.
        self.data: bytes = self._serializer.dumps((JOB_FUNCTION, None, (), {}))
        #: RQ's fields that are the same for every job, but for those it writes empty (no
        #: callbacks, not started, no worker, no group): RQ reads an absent field as it
        #: reads an empty one (``Job.restore``: ``if obj.get(name)``), and each field costs
        #: Redis CPU per event (a compact hash is searched whole for every field set).
        self.constant_fields: dict[str, Any] = {
            name: value
            for name, value in template.to_dict().items()
            if name not in VARIABLE_FIELDS and value != ""
        }

    def fields(self, event_key: str, description: str, timestamp: str | None = None) -> JobFields:
        """The fields of one event's job (with ``event_fields`` beside them); ``timestamp``
        (``utc_timestamp()``) may be shared by a batch's jobs."""
        job_id = redis_keys.job_id(event_key)
        return JobFields(
            job_id=job_id,
            job_key=Job.key_for(job_id),
            data=self.data,
            description=description,
            timestamp=timestamp or utc_timestamp(),
        )

    def full_mapping(self, event_key: str, description: str) -> dict[str, Any]:
        """The whole job hash as RQ itself writes it when it enqueues the job."""
        job = self.create(event_key, description, args=())
        job.enqueued_at = now()
        return job.to_dict()

    def enqueue(self, queue: Queue, event: PaymentEvent, description: str) -> Job:
        """Queue ``event``'s job with RQ's own enqueue, its fields written in the same
        transaction (a worker never sees the job without them)."""
        job = self.create(event.key, description, queue.connection, args=())
        with queue.connection.pipeline() as pipe:
            queue.enqueue_job(job, pipeline=pipe)
            pipe.hset(job.key, mapping=event_fields(event))  # type: ignore[arg-type]
            pipe.execute()
        return job

    def create(
        self,
        event_key: str,
        description: str,
        connection: Redis | None = None,
        *,
        args: tuple[str, ...] | None = None,
    ) -> Job:
        """The job of an event, as RQ's ``Job.create`` makes it: the one definition, used
        for the receiver's template and by replays. ``args=()`` for a job whose event is
        in its fields (``enqueue``); by default the event key, as 0.1.0 queued them."""
        return Job.create(
            JOB_FUNCTION,
            args=(event_key,) if args is None else args,
            # Job.create needs a connection object but performs no I/O with it.
            connection=connection if connection is not None else Redis(),
            id=redis_keys.job_id(event_key),
            description=description,
            timeout=self._settings.job_timeout_seconds,
            result_ttl=RESULT_TTL_SECONDS,
            failure_ttl=self._settings.failed_job_ttl_seconds,
            # Retries are decided by the job itself (workers/jobs.py): it knows which
            # errors are transient and how long Nexudus asked us to wait.
            retry=Retry(max=self._settings.job_max_attempts - 1)
            if self._settings.job_max_attempts > 1
            else None,
            origin=self.queue_name,
            status=JobStatus.QUEUED,
        )
