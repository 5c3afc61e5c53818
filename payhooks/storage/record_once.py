"""Record each event once and queue its one job: the hand-off every front door shares.

Whatever brings an event in (a verified webhook, or a poll of a provider's API), the
same writes follow, atomically, in one Lua script per event: the origin is kept (the
webhook's body and signature headers, or the polled record; compressed), the trail gets
its entries ("received" or "polled"; the trail is the dedupe record: an event whose
trail says it was queued is a duplicate), and, unless the event was recorded before, the
one RQ job (what ``Queue.enqueue`` would write, as RQ reads it: job hash, queue set,
push), holding the event itself (payhooks/storage/jobs.py). ``RecordOnce`` builds the
script's calls for a batch; ``run_sync`` runs them with redis-py (a poll, a replay),
``run_async`` with redis.asyncio (the receiver, whose group commit in service/inbox.py
sits on top of it). A poll's calls are fenced by its task's lease: each script first checks that the lease still
holds the run's token, and writes nothing if not, so a run that outlived its lease cannot
write alongside the next one.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from itertools import chain
from operator import itemgetter
from typing import Any

import hiredis
import orjson
from redis import Redis
from redis.asyncio import Redis as AsyncRedis
from redis.exceptions import NoScriptError, RedisError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError
from rq import Queue
from rq.job import Job

from payhooks.domain.events import Ignored, PaymentEvent
from payhooks.logs import utc_text
from payhooks.storage import redis_keys, trail, unapplied
from payhooks.storage.jobs import JobFactory, event_fields, short_description
from payhooks.storage.trail import StoredOrigin

# The script's inputs, by name: the Lua reads them into locals of these names (as arq
# names every script input), and the Python side builds them from dicts of these names.
# What is the same for every event (the queue's keys, the job's constant fields and data,
# the TTL) is written into the script: each input costs the receiver CPU per event.
SCRIPT_KEYS = (
    "event_key",  # 0.1.0's dedupe record; still honoured
    "job_key",
    "trail_key",
    "invoice_index",
    "webhook_key",  # where the origin is kept (a webhook's, or a polled record's, key)
    "fence_key",  # '' unfenced (webhooks); else the lease that must hold fence_token
)
SCRIPT_ARGS = (
    "job_description",
    "timestamp",  # created_at and enqueued_at of the job
    "trail_arrival",  # the "received+enqueued" or "polled+enqueued" entry
    "trail_duplicate",
    "invoice_score",  # '' when the event names no invoice id
    "event_name",  # the event key, as the invoice index's member
    "webhook",  # '' when stored already (by the batch's first event); else its record
    "event",  # the job hash's event fields (jobs.event_fields), a JSON list of pairs
    "fence_token",
    "unapplied_score",  # '' unless a payment made: when it was paid (storage/unapplied.py)
)

# The webhook is kept first, for the trail (never over a hash of the same body: one kept
# by 0.1.0, or as unprocessed). The event's trail is its dedupe record: an event whose job
# was once queued (or replayed) is a duplicate for as long as its trail is kept. It is
# written after the job: Redis does not undo a script's earlier writes when a later
# command fails, and a record without its job would turn every redelivery away. Arrival
# and hand-off are one entry (trail.entry_at: "received+enqueued", read back as two); it
# does not name the job, whose id is the event key's (redis_keys.job_id): each entry is
# kept EVENT_RETENTION_DAYS. Whether an entry says queued is read as trail.read_entry
# reads it: one written as JSON (up to main 8cd8f52) by its stage's text, one written
# since by its stage, or stages ("<Unix ms> <stage>[+<stage>][ <fields>]").
# The trail is read and appended to by trail.TRAIL_LUA's functions, as every reader and
# writer of a trail does: a string of lines, or a list if an earlier release began it.
#
# The script runs once per event on the Redis every receiver and worker shares, so it
# does no work a new event does not need (issue 21's fourth pass): one EXISTS tells a new
# event (none of its records there: almost every event) from one seen in some way, and
# only the latter's trail is read; a new trail is written at once. The job's RQ fields
# that are the same for every job are copied from a template hash (COPY duplicates its
# compact encoding whole; a field set costs a search of the whole hash), which the first
# script to miss it writes; the job's own fields follow. PERSIST: a template given a TTL
# by hand must not pass it on to the jobs. A template that is no hash (set by hand) is
# copied all the same, and the job's fields then fail WRONGTYPE: that copy is deleted
# and the template written again before the job is, as a script's earlier writes stay
# when a later command fails, and a job key left without its job would make the event a
# duplicate for good (pcall, not a TYPE per event: the usual event pays nothing for it).
# The TTL is text: Redis formats a Lua number with snprintf on every call.
_RECORD_AND_ENQUEUE = """
if fence_key ~= '' and redis.call('GET', fence_key) ~= fence_token then
    return -1
end
if webhook ~= '' and redis.call('TYPE', webhook_key).ok ~= 'hash' then
    redis.call('SET', webhook_key, webhook, 'EX', TTL)
end
local fresh = redis.call('EXISTS', event_key, job_key, trail_key) == 0
if not fresh then
    local seen = redis.call('EXISTS', event_key, job_key) > 0
    if not seen then
        local QUEUED = {%(queued_stages)s}
        for _, entry in ipairs(trail_entries(trail_key)) do
            if string.sub(entry, 1, 1) == '{' then
                seen = string.find(entry, %(queued)s, 1, true)
                    or string.find(entry, %(replayed)s, 1, true)
            else
                local stages = string.match(entry, '^%%d+ ([^ ]+)')
                for stage in string.gmatch(stages or '', '[^+]+') do
                    if QUEUED[stage] then
                        seen = true
                        break
                    end
                end
            end
            if seen then
                break
            end
        end
    end
    if seen then
        note_trail(trail_key, TTL, {trail_duplicate})
        return 0
    end
end
local job_id = string.sub(job_key, %(job_prefix)d)
if redis.call('COPY', %(template_key)s, job_key) == 0 then
    redis.call('HSET', %(template_key)s, 'data', DATA%(constants)s)
    redis.call('COPY', %(template_key)s, job_key)
end
redis.call('PERSIST', job_key)
local own = redis.pcall('HSET', job_key, 'description', job_description,
                        'created_at', timestamp, 'enqueued_at', timestamp,
                        unpack(cjson.decode(event)))
if type(own) == 'table' and own.err then
    redis.call('DEL', job_key, %(template_key)s)
    redis.call('HSET', %(template_key)s, 'data', DATA%(constants)s)
    redis.call('COPY', %(template_key)s, job_key)
    redis.call('HSET', job_key, 'description', job_description,
               'created_at', timestamp, 'enqueued_at', timestamp,
               unpack(cjson.decode(event)))
end
redis.call('SADD', %(queues_key)s, %(queue_key)s)
redis.call('RPUSH', %(queue_key)s, job_id)
if fresh then
    redis.call('SET', trail_key, trail_arrival, 'EX', TTL)
else
    append_trail(trail_key, TTL, {trail_arrival})
end
if invoice_score ~= '' then
    redis.call('ZADD', invoice_index, 'NX', invoice_score, event_name)
    redis.call('EXPIRE', invoice_index, TTL)
end
if unapplied_score ~= '' then
    redis.call('ZADD', %(unapplied_key)s, 'NX', unapplied_score, event_name)
end
return 1
"""


#: The stages that say an event's job was queued (or queued again by a replay): an event
#: whose trail holds either was recorded before.
QUEUED_STAGES = ("enqueued", "replayed")
#: The same, as entries written as JSON (up to main 8cd8f52) hold them.
QUEUED_MARKS = tuple(f'"stage":"{stage}"' for stage in QUEUED_STAGES)


class Seen(StrEnum):
    """Whether an event was recorded before, as ``seen_before`` reads it."""

    YES = "seen"
    NO = "unseen"
    #: Nothing readable says it was queued, and its trail holds an entry that cannot be
    #: read (trail.UNREADABLE), which might have: not known.
    UNREADABLE = "unreadable"


def seen_before(redis: Redis, event_keys: Sequence[str]) -> list[Seen]:
    """Whether each event was recorded before, as the script decides it (its job, a trail
    saying it was queued, or 0.1.0's event record), in one round trip. An entry that
    cannot be read never says queued: an event that nothing else says was is
    ``Seen.UNREADABLE``, each caller deciding what that means for it (logged here)."""
    with redis.pipeline(transaction=False) as pipe:
        for key in event_keys:
            pipe.exists(redis_keys.event(key), Job.key_for(redis_keys.job_id(key)))
            pipe.execute_command(*trail.read_call(redis_keys.trail(key)))  # type: ignore[no-untyped-call]
        answers = pipe.execute()
    return [
        _seen(key, bool(answers[2 * n]), answers[2 * n + 1]) for n, key in enumerate(event_keys)
    ]


def _seen(event_key: str, exists: bool, entries: list[Any]) -> Seen:
    if exists:
        return Seen.YES
    steps = trail.read_entries(entries)
    if any(step["stage"] in QUEUED_STAGES for step in steps):
        return Seen.YES
    if trail.unreadable(steps):
        trail.log_unreadable(event_key, steps)
        return Seen.UNREADABLE
    return Seen.NO


def recorded(redis: Redis, event_keys: Sequence[str]) -> list[bool]:
    """``seen_before`` as yes or no, for callers that would rather write nothing for what
    was (a reconcile scan, a provider's step): an event whose trail cannot be read is not
    known to be recorded, so it is handed to the script, whose own check (and, past it,
    the job's invoice marker) turns a true duplicate away, rather than skipped, which
    could drop a payment."""
    return [seen is Seen.YES for seen in seen_before(redis, event_keys)]


#: The script's inputs in their order, from the dicts naming them (one C call each).
_KEYS = itemgetter(*SCRIPT_KEYS)
_ARGS = itemgetter(*SCRIPT_ARGS)


def _named_inputs() -> str:
    keys_ = "".join(f"local {name} = KEYS[{n}]\n" for n, name in enumerate(SCRIPT_KEYS, 1))
    args = "".join(f"local {name} = ARGV[{n}]\n" for n, name in enumerate(SCRIPT_ARGS, 1))
    return keys_ + args


def _encode(value: Any) -> bytes:
    """The bytes Redis receives for ``value`` (redis-py sends str as UTF-8, numbers as
    their text, bytes as they are)."""
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):  # str subclasses (RQ's JobStatus) send their value
        return value.encode()
    if isinstance(value, bool):
        raise TypeError("Redis takes no booleans")
    if isinstance(value, float):
        return repr(value).encode()
    return str(value).encode()


def _lua_string(value: Any) -> str:
    """A Lua string literal holding exactly those bytes; every byte is escaped, so nothing
    can break out of the literal."""
    return '"' + "".join(f"\\{byte}" for byte in _encode(value)) + '"'


def record_and_enqueue_script(jobs: JobFactory, ttl: int) -> str:
    """The script, with what never varies written into it as constants."""
    constants = "".join(
        f", {_lua_string(name)}, {_lua_string(value)}"
        for name, value in jobs.constant_fields.items()
    )
    data = _lua_string(jobs.data)
    header = f"local TTL = '{int(ttl)}'\nlocal DATA = {data}\n"
    # Named by what it holds, and by nothing else: another job configuration (a job
    # timeout changed while the old receivers still run) has a template of its own, while
    # another EVENT_RETENTION_DAYS (not in the template) leaves none behind.
    template = redis_keys.job_template(hashlib.sha256((data + constants).encode()).hexdigest()[:16])
    return (
        header
        + _named_inputs()
        + trail.TRAIL_LUA
        + _RECORD_AND_ENQUEUE
        % {
            "constants": constants,
            "template_key": _lua_string(template),
            "job_prefix": len(Job.key_for("")) + 1,
            "queue_key": _lua_string(jobs.queue_key),
            "queues_key": _lua_string(Queue.redis_queues_keys),
            "queued": _lua_string(QUEUED_MARKS[0]),
            "replayed": _lua_string(QUEUED_MARKS[1]),
            "queued_stages": ", ".join(f"[{_lua_string(s)}] = true" for s in QUEUED_STAGES),
            "unapplied_key": _lua_string(redis_keys.UNAPPLIED),
        }
    )


class NotReplicated(RedisError):
    """Fewer replicas than REDIS_ACK_REPLICAS confirmed the writes within the timeout."""


class Accepted(StrEnum):
    QUEUED = "queued"
    DUPLICATE = "duplicate"
    #: Nothing written: the fencing lease no longer holds the run's token.
    FENCED = "fenced"


_ACCEPTED = {1: Accepted.QUEUED, 0: Accepted.DUPLICATE, -1: Accepted.FENCED}


@dataclass(frozen=True, slots=True)
class Fence:
    """A lease key and the token it must hold for a fenced call to write anything."""

    key: str
    token: str


class RecordOnce:
    """The calls that record a batch's events once and queue their jobs (one script call
    per event), and what their answers mean."""

    def __init__(self, jobs: JobFactory, *, event_ttl_seconds: int) -> None:
        self._jobs = jobs
        self._ttl = event_ttl_seconds
        self.source = record_and_enqueue_script(jobs, event_ttl_seconds)
        self.sha = hashlib.sha1(self.source.encode()).hexdigest()  # noqa: S324 (Redis's script id)

    @property
    def ttl_seconds(self) -> int:
        """How long what it records is kept (EVENT_RETENTION_DAYS)."""
        return self._ttl

    def calls(
        self,
        webhook: StoredOrigin,
        events: Sequence[PaymentEvent],
        ignored: Sequence[Ignored] = (),
        *,
        fence: Fence | None = None,
    ) -> list[list[Any]]:
        """Keep the origin, queue a job per new event, note ignored ones in the trail."""
        # One clock reading for the batch: the trail's time (Unix ms, trail.now_ms's), the
        # jobs' (jobs.utc_timestamp's, as RQ writes it) and the scores.
        now = time.time()
        at = int(now * 1000)
        stamp = utc_text(now, 6)
        # The first event's script stores the origin; without events, a plain SET does
        # (NX: never over a hash of the same body, kept by 0.1.0 or as unprocessed).
        calls: list[list[Any]] = [
            self._call(event, webhook, now, at, stamp, store_webhook=n == 0, fence=fence)
            for n, event in enumerate(events)
        ]
        if not events:
            calls.append(["SET", webhook.key, webhook.record(), "NX"])
            calls.append(["EXPIRE", webhook.key, self._ttl])
        for item in ignored:
            trail_key = redis_keys.trail(f"{webhook.provider}:{item.event_id}")
            received = trail.entry_at(
                at,
                webhook.ARRIVAL,
                event_type=item.event_type,
                **{webhook.TRAIL_FIELD: webhook.key},
            )
            ignored_entry = trail.entry_at(at, "ignored", reason=item.reason)
            calls.append(trail.note_call(trail_key, self._ttl, received, ignored_entry))
        return calls

    @staticmethod
    def accepted(results: Sequence[Any], events: int) -> list[Accepted]:
        """What happened to each of the first ``events`` calls' events, in order."""
        return [_ACCEPTED[int(result)] for result in results[:events]]

    def _call(
        self,
        event: PaymentEvent,
        webhook: StoredOrigin,
        now: float,
        at: int,
        stamp: str,
        *,
        store_webhook: bool,
        fence: Fence | None,
    ) -> list[Any]:
        key = event.key  # a property, made afresh on each read
        job = self._jobs.fields(key, short_description(event), stamp)
        # trail.entry_at's entries, written out: the time, stages and field name are ours
        # and the digest is hex, so nothing needs escaping.
        origin = f'{{"{trail.FIELD_NAMES[webhook.TRAIL_FIELD]}":"{webhook.digest}"}}'
        invoice_id = event.invoice.invoice_id
        script_keys = {
            "event_key": redis_keys.event(key),
            "job_key": job.job_key,
            "trail_key": redis_keys.trail(key),
            "invoice_index": redis_keys.invoice_events(invoice_id if invoice_id is not None else 0),
            "webhook_key": webhook.key,
            "fence_key": fence.key if fence else "",
        }
        script_args = {
            "job_description": job.description,
            "timestamp": job.timestamp,
            # What the body says (the event's type) is not repeated: the job holds it while
            # it lives, the kept origin for as long as the trail. Which delivery (or poll)
            # a duplicate was: its body is kept too, under that key.
            "trail_arrival": f"{at} {webhook.ARRIVAL}+enqueued {origin}",
            "trail_duplicate": f"{at} duplicate {origin}",
            # Unix ms, a whole number: Redis keeps it in 6 bytes less than the float.
            "invoice_score": "" if invoice_id is None else str(at),
            "event_name": key,
            "webhook": webhook.record() if store_webhook else "",
            "event": orjson.dumps(list(chain.from_iterable(event_fields(event).items()))),
            "fence_token": fence.token if fence else "",
            "unapplied_score": unapplied.score(event, ttl_seconds=self._ttl, now=now),
        }
        return ["EVALSHA", self.sha, len(SCRIPT_KEYS), *_KEYS(script_keys), *_ARGS(script_args)]


def run_sync(
    redis: Redis,
    record: RecordOnce,
    calls: list[list[Any]],
    round_trips: Callable[[int], None] | None = None,
) -> list[Any]:
    """Run ``calls`` in one round trip with redis-py; their answers, in order. Three when
    Redis lacks the script (first use, or a restart): ``round_trips`` is told how many."""
    with redis.pipeline(transaction=False) as pipe:
        for call in calls:
            pipe.execute_command(*call)  # type: ignore[no-untyped-call]
        answers = list(pipe.execute(raise_on_error=False))
    missing = _missing_script(answers)
    if missing:
        redis.script_load(record.source)
        with redis.pipeline(transaction=False) as pipe:
            for n in missing:
                pipe.execute_command(*calls[n])  # type: ignore[no-untyped-call]
            for n, answer in zip(missing, pipe.execute(raise_on_error=False), strict=True):
                answers[n] = answer
    if round_trips is not None:
        round_trips(3 if missing else 1)
    failed = next((a for a in answers if isinstance(a, Exception)), None)
    if failed is not None:
        raise failed
    return answers


def _missing_script(answers: list[Any]) -> list[int]:
    """Which calls Redis answered NOSCRIPT (first use, or a restart lost its scripts): they
    alone run again once it is loaded. Not the whole batch: another client may have loaded
    it while Redis ran this one, and the calls after that point ran, queuing their events,
    which a second run would then call duplicates (a scan's count, a webhook's answer and
    its trail would say duplicate for an event just queued)."""
    return [n for n, answer in enumerate(answers) if isinstance(answer, NoScriptError)]


def record_events(
    redis: Redis,
    record: RecordOnce,
    webhook: StoredOrigin,
    events: Sequence[PaymentEvent],
    ignored: Sequence[Ignored] = (),
) -> list[Accepted]:
    """Record ``events`` once and queue their jobs, synchronously: what happened to each."""
    results = run_sync(redis, record, record.calls(webhook, events, ignored))
    return record.accepted(results, len(events))


async def run_async(
    redis: AsyncRedis,
    record: RecordOnce,
    calls: list[list[Any]],
    *,
    ack_replicas: int = 0,
    ack_timeout_ms: int = 500,
) -> list[Any]:
    """Run ``calls`` in one round trip with redis.asyncio; with ``ack_replicas``, only once
    that many replicas hold the writes (WAIT, on the writes' own connection), else
    ``NotReplicated``."""
    wait = [["WAIT", ack_replicas, ack_timeout_ms]] if ack_replicas else []
    replies = await _round_trip(redis, [*calls, *wait])
    missing = _missing_script(replies[: len(calls)])
    if missing:
        await redis.script_load(record.source)
        again = await _round_trip(redis, [*(calls[n] for n in missing), *wait])
        for n, reply in zip(missing, again, strict=False):
            replies[n] = reply
        if wait:
            # Each round trip's WAIT covers the writes on its own connection: both must hold.
            replies[-1] = _fewest(replies[-1], again[-1])
    failed = next((r for r in replies if isinstance(r, ResponseError)), None)
    if failed is not None:
        raise failed
    return _replicated(replies, ack_replicas)


def _fewest(first: Any, second: Any) -> Any:
    if isinstance(first, Exception) or isinstance(second, Exception):
        return first if isinstance(first, Exception) else second
    return min(int(first), int(second))


async def _round_trip(redis: AsyncRedis, commands: list[list[Any]]) -> list[Any]:
    """Every command in one write and every reply read, as redis-py's pipeline does, but
    packed by hiredis: redis-py packs argument by argument in Python, which cost the
    receiver more than everything else it does per event but the HTTP itself."""
    payload = b"".join(hiredis.pack_command(tuple(command)) for command in commands)
    pool = redis.connection_pool
    connection = await pool.get_connection()  # type: ignore[no-untyped-call]

    async def exchange() -> list[Any]:
        await connection.send_packed_command(payload)
        replies: list[Any] = []
        # One deadline, the connection's read timeout, for all the replies: left to
        # itself, read_response sets one up for each reply (an asyncio timeout, its
        # timer), which cost more per event than reading the reply. math.inf: no
        # deadline of its own (redis-py >= 8.1).
        try:
            async with asyncio.timeout(connection.socket_timeout):
                for _ in commands:
                    try:
                        replies.append(await connection.read_response(timeout=math.inf))
                    except ResponseError as exc:  # read on: the connection must stay in step
                        replies.append(exc)
        except TimeoutError:
            # As read_response's own deadline would: the client's retry policy takes it.
            await connection.disconnect(nowait=True)
            raise RedisTimeoutError("Timeout reading the replies") from None
        return replies

    async def reconnect(error: Exception) -> None:
        await connection.disconnect()

    try:
        # Lost connections are retried as the client's pipelines are (its Retry policy);
        # a batch sent again is answered as duplicates for what had been recorded.
        replies: list[Any] = await connection.retry.call_with_retry(exchange, reconnect)
        return replies
    except BaseException:
        # Cancelled or failed mid-read: replies may still be on the way; never hand the
        # connection on with them.
        await connection.disconnect()
        raise
    finally:
        await pool.release(connection)


def _replicated(results: list[Any], ack_replicas: int) -> list[Any]:
    """The results without WAIT's, if enough replicas hold the writes; else the callers
    answer 503 and the provider's retry is deduplicated (or, after a failover that lost
    the writes, queued afresh)."""
    if not ack_replicas:
        return results
    *results, replicas = results
    if int(replicas) < ack_replicas:
        raise NotReplicated(f"{replicas} of {ack_replicas} replicas confirmed in time")
    return results
