"""The event trail: what happened to every verified provider event, kept in Redis.

Per event, its entries (``payhooks:trail:<provider>:<event id>``): received (a
webhook) or polled (a poll of the provider's API) -> enqueued | duplicate | ignored ->
(retrying ...) -> applied | ignored | failed. An event's trail is also its dedupe record
(payhooks/storage/record_once.py). Each event's origin is kept, zstd-compressed: per
webhook request, its verified body and signature headers (``payhooks:webhook:<digest>``),
so the event can be re-verified or re-normalised; per polled record, the record as the
provider's API gave it (``payhooks:polled:<digest>``); the digest is the first 128 bits of
the SHA-256 of what came (``origin_digest``; all 256 before this release). Each is one
string (``StoredOrigin.record``); a webhook kept as unprocessed, or by 0.1.0, is a hash.
Card and bank details are redacted before storing (then only re-normalisation is possible).
Per invoice, the events that named it. Everything expires after EVENT_RETENTION_DAYS.

Every entry is kept that long, so it is written short (``entry_at``) and read back, by
every reader, through ``read_entry``, which reads entries written before alike. A trail is
one string, its entries a line each (a list, as releases before this one kept it, costs
about 80 bytes more per event: its quicklist and node): every writer appends through
``TRAIL_LUA``'s ``append_trail`` and every reader reads through its ``trail_entries``, which
take a trail of either kind (an old list stays a list, appended to as before).
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, cast

import orjson
from redis import Redis

from payhooks.logs import utc_text
from payhooks.storage import bodies, redis_keys
from payhooks.storage.redis_keys import text

log = logging.getLogger("payhooks.trail")


def _glob_escape(value: str) -> str:
    return "".join(f"\\{ch}" if ch in "*?[]\\" else ch for ch in value)


def now_iso() -> str:
    return utc_text(time.time())


def now_ms() -> int:
    return time.time_ns() // 1_000_000


#: How an entry names its fields in Redis: briefly, for those most entries carry (a
#: payment's outcome, an event's origin); other fields by their own name. ``read_entry``
#: gives every field its name back.
FIELD_NAMES = {
    "webhook": "w",
    "origin": "o",
    "event_type": "et",
    "token_id": "ti",
    "token_created": "tc",
    "paid_on_set": "ps",
    "note": "n",
    "reason": "r",
    "job_id": "j",
    "source": "s",
}
_FIELD_OF = {short: name for name, short in FIELD_NAMES.items()}
#: What ``read_entry`` names an entry's own parts: no field of an entry is named so.
_OWN_NAMES = frozenset({"at", "stage"})
#: The fields that name an origin, and its key from the digest an entry keeps (the field
#: says which kind: an entry never repeats the key's prefix).
ORIGIN_FIELDS: dict[str, Callable[[str], str]] = {
    "webhook": redis_keys.webhook,
    "origin": redis_keys.polled,
}


def entry(stage: str, **fields: Any) -> str:
    return entry_at(now_ms(), stage, **fields)


def entry_at(at_ms: int, stage: str, **fields: Any) -> str:
    """One trail entry as Redis keeps it: ``<Unix ms> <stage>``, then, if it has fields, a
    space and a JSON object of them (named as FIELD_NAMES says; an origin by its digest
    alone). ``stage`` may be two, ``received+enqueued``: what one script wrote at once,
    read back as two entries (the fields are the first's)."""
    line = f"{at_ms} {stage}"
    if fields:
        line += " " + _fields_json(fields)
    if "\n" in line:  # a trail kept as a string is split on it (orjson escapes the fields')
        raise ValueError("a trail entry holds no newline")
    return line


def _fields_json(fields: dict[str, Any]) -> str:
    short: dict[str, Any] = {}
    for name, value in fields.items():
        if name in _FIELD_OF or name in _OWN_NAMES:
            raise ValueError(f"trail field {name!r} is another's short name, or the entry's own")
        if name in ORIGIN_FIELDS and isinstance(value, str):
            value = value.rpartition(":")[2]
        short[FIELD_NAMES.get(name, name)] = value
    return orjson.dumps(short).decode()


#: The stage an entry no release could have written reads as (truncated, hand-edited,
#: corrupted): each reader decides what it means for the event (README, "Inspecting").
UNREADABLE = "unreadable"
#: How much of an unreadable entry a person is shown (``raw``): enough to recognise it.
UNREADABLE_SHOWN_CHARS = 60


def read_entry(raw: bytes | str) -> list[dict[str, Any]]:
    """A trail entry as every reader sees it, whichever release wrote it: a dict per step
    (``at``: ISO 8601 UTC to the millisecond, ``stage``, then the fields by their full
    names; an origin by its key). Releases up to main 8cd8f52 wrote a JSON object per
    step, as this reads it, and named an origin by its key. One that neither release
    could have written is one step, ``UNREADABLE`` (``unreadable_step``), never an error:
    one bad entry must not stop a trace, a reconcile scan or an audit."""
    try:
        return _read_entry(raw)
    except (ValueError, TypeError, AttributeError, OverflowError):
        return [unreadable_step(raw)]


def _read_entry(raw: bytes | str) -> list[dict[str, Any]]:
    line = text(raw)
    if line.startswith("{"):
        step = json.loads(line)
        if not isinstance(step.get("stage"), str) or not isinstance(step.get("at"), str):
            raise ValueError("an entry names its stage and time")
        return [step]
    at_ms, _, rest = line.partition(" ")
    stage, _, fields_json = rest.partition(" ")
    if not at_ms.isascii() or not at_ms.isdigit() or not stage:
        raise ValueError("an entry begins with its time and stage")
    fields = {_FIELD_OF.get(k, k): v for k, v in orjson.loads(fields_json or "{}").items()}
    if not _OWN_NAMES.isdisjoint(fields):
        # No writer names a field so (entry_at): read as written, it would replace the
        # entry's stage, and an event only received would read as queued.
        raise ValueError("an entry's fields never name its stage or time")
    for name, key_of in ORIGIN_FIELDS.items():
        if name in fields:
            fields[name] = key_of(str(fields[name]))
    seconds, millis = divmod(int(at_ms), 1000)
    at = f"{time.strftime('%Y-%m-%dT%H:%M:%S', time.gmtime(seconds))}.{millis:03d}Z"
    first, *then = stage.split("+")
    return [{"at": at, "stage": first, **fields}, *({"at": at, "stage": s} for s in then)]


def unreadable_step(raw: bytes | str) -> dict[str, Any]:
    """An entry that cannot be read, as a person is shown it: its first
    UNREADABLE_SHOWN_CHARS characters (anything unprintable, or not UTF-8, as ``?``) and its size. It
    has no time: nothing in it can be trusted."""
    data = raw.encode(errors="replace") if isinstance(raw, str) else bytes(raw)
    shown = "".join(
        ch if ch.isprintable() and ch != "\ufffd" else "?"
        for ch in data[: UNREADABLE_SHOWN_CHARS * 4].decode(errors="replace")
    )
    if len(shown) > UNREADABLE_SHOWN_CHARS:
        shown = shown[:UNREADABLE_SHOWN_CHARS] + "…"
    return {"at": "", "stage": UNREADABLE, "raw": shown, "bytes": len(data)}


def read_entries(raw: list[Any]) -> list[dict[str, Any]]:
    """A trail's entries as Redis keeps them (``READ_TRAIL``'s answer), as every reader
    sees them."""
    return [step for item in raw for step in read_entry(item)]


def unreadable(steps: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The steps of a trail that could not be read."""
    return [step for step in steps if step["stage"] == UNREADABLE]


def log_unreadable(event_key: str, steps: list[dict[str, Any]]) -> None:
    """One log line for an event whose trail holds unreadable entries: the event and the
    entries' sizes, never their text (it may hold anything)."""
    if bad := unreadable(steps):
        log.warning(
            "trail.unreadable",
            extra={"event_key": event_key, "entries": len(bad), "bytes": [s["bytes"] for s in bad]},
        )


#: The trail's two Lua functions, for every script that reads or writes one (this
#: module's, and the record-once script in payhooks/storage/record_once.py). A trail is
#: one string of lines, rewritten whole on each append (SET, never APPEND: APPEND leaves
#: room to grow, kept as long as the trail); a trail begun by an earlier release is a
#: list, and stays one: its entries are pushed as they were. Either way the append sets
#: the trail's TTL afresh, as RPUSH and EXPIRE did.
_READ_LUA = """
local function trail_entries(key)
    local kind = redis.call('TYPE', key).ok
    if kind == 'none' then
        return {}
    end
    if kind == 'string' then
        local entries = {}
        for line in string.gmatch(redis.call('GET', key), '[^\\n]+') do
            entries[#entries + 1] = line
        end
        return entries
    end
    return redis.call('LRANGE', key, 0, -1)
end
"""
_APPEND_LUA = """
local function append_trail(key, ttl, entries)
    if redis.call('TYPE', key).ok == 'list' then
        redis.call('RPUSH', key, unpack(entries))
        redis.call('EXPIRE', key, ttl)
        return
    end
    local lines = table.concat(entries, '\\n')
    local kept = redis.call('GET', key)
    if kept then
        lines = kept .. '\\n' .. lines
    end
    redis.call('SET', key, lines, 'EX', ttl)
end
"""
#: How long a string trail may grow by notes: a delivery answered as a duplicate, an
#: ignored event's arrival. A verified body can be sent again at will (a signature with no
#: time limit, or within its limit), and each note rewrote the whole string, replicated
#: and written to the AOF whole: O(n) per delivery, 660 KB of AOF each at 10,000 replays.
#: Past this, a note only sets the TTL afresh (as the append would have). Outcomes and
#: hand-offs (what dedupe reads) are never held back. A usual trail is a few hundred bytes.
NOTES_UNTIL_BYTES = 16_384
_NOTE_LUA = f"""
local function note_trail(key, ttl, entries)
    if redis.call('TYPE', key).ok == 'string'
            and redis.call('STRLEN', key) >= {NOTES_UNTIL_BYTES} then
        redis.call('EXPIRE', key, ttl)
        return
    end
    append_trail(key, ttl, entries)
end
"""
TRAIL_LUA = _READ_LUA + _APPEND_LUA + _NOTE_LUA
#: A trail's entries, whichever kind it is (KEYS[1]: the trail). Each script holds only
#: the function it needs: a reconcile scan sends it once per event it asks about.
READ_TRAIL = _READ_LUA + "return trail_entries(KEYS[1])\n"
#: Entries appended to a trail (KEYS[1]: the trail; ARGV: its TTL, then the entries).
APPEND_TRAIL = _APPEND_LUA + "append_trail(KEYS[1], ARGV[1], {unpack(ARGV, 2)})\n"
#: Notes appended to a trail, unless it is long already (``NOTES_UNTIL_BYTES``).
NOTE_TRAIL = _APPEND_LUA + _NOTE_LUA + "note_trail(KEYS[1], ARGV[1], {unpack(ARGV, 2)})\n"


def append_call(trail_key: str, ttl_seconds: int, *entries: str) -> list[Any]:
    """The command that appends ``entries`` to a trail, for a pipeline or a batch of
    calls. EVAL, not EVALSHA: the script is short (about 400 bytes), and no caller need
    load it first or handle NOSCRIPT."""
    return ["EVAL", APPEND_TRAIL, 1, trail_key, ttl_seconds, *entries]


def note_call(trail_key: str, ttl_seconds: int, *entries: str) -> list[Any]:
    """``append_call``'s, for notes (``NOTES_UNTIL_BYTES``)."""
    return ["EVAL", NOTE_TRAIL, 1, trail_key, ttl_seconds, *entries]


def read_call(trail_key: str) -> list[Any]:
    """The command whose answer is a trail's entries (``read_entries`` reads them)."""
    return ["EVAL", READ_TRAIL, 1, trail_key]


def origin_digest(content: bytes) -> str:
    """What names a kept origin: 128 bits of the SHA-256 of the body (or record) as it came,
    in hex. Content-addressed (a redelivered body is the same record); two bodies that
    differ collide with odds of about n**2 / 2**129 for n bodies (1 in 10**20 for a
    billion), and a body is verified before it is kept."""
    return hashlib.sha256(content).hexdigest()[:32]


@dataclass(frozen=True, slots=True)
class StoredOrigin:
    """Where events came from, as it is kept: the body (redacted if needed) and, for a
    request, its signature headers."""

    provider: str
    key: str
    #: As received (or redacted): what is normalised.
    body: bytes
    headers: dict[str, str]
    redacted: bool
    #: The origin as Redis keeps it (``record``), made once.
    stored: bytes = b""

    #: How its events' trails begin, and the field that names it there.
    ARRIVAL: ClassVar[str] = "received"
    TRAIL_FIELD: ClassVar[str] = "webhook"

    @property
    def headers_json(self) -> str:
        return orjson.dumps(self.headers).decode()

    @property
    def digest(self) -> str:
        """What names it (``origin_digest``): its key without the prefix."""
        return self.key.rpartition(":")[2]

    def record(self) -> bytes:
        """The origin as one Redis string (a hash would take a few hundred bytes more: its
        body is over the 64 bytes a compact hash holds)."""
        return self.stored

    @staticmethod
    def pack(provider: str, kept: bytes, headers: dict[str, str], redacted: bool) -> bytes:
        """``ORIGIN_RECORD``, how the rest is kept (bodies.py: the dictionary's name, or
        nothing), a newline, then a JSON line saying what it is (its fields named by a
        letter, left out when empty) and the body, compressed together: a signature
        header's name is in the dictionary, and its digits cost half as much compressed.
        When it came is not in it: each of its events' trails says that."""
        head: dict[str, Any] = {"p": provider}
        if headers:
            head["h"] = headers
        if redacted:
            head["r"] = 1
        stored, encoding = bodies.pack(orjson.dumps(head) + b"\n" + kept)
        return ORIGIN_RECORD + encoding.encode() + b"\n" + stored

    def mapping(self) -> dict[str, str | bytes]:
        """The origin as a hash: how 0.1.0 kept every webhook, and how an unprocessed one is
        kept (its hash also holds why)."""
        stored, encoding = bodies.pack(self.body)
        return {
            "provider": self.provider,
            "body": stored,
            "encoding": encoding,
            "headers": self.headers_json,
            "redacted": "1" if self.redacted else "0",
            "received_at": now_iso(),
        }


@dataclass(frozen=True, slots=True)
class StoredWebhook(StoredOrigin):
    """A verified request as it is kept: body (redacted if needed) and signature headers."""

    @classmethod
    def of(
        cls, provider: str, body: bytes, headers: dict[str, str], redacted_body: bytes | None
    ) -> StoredWebhook:
        kept = body if redacted_body is None else redacted_body
        redacted = redacted_body is not None
        return cls(
            provider=provider,
            key=redis_keys.webhook(origin_digest(body)),
            body=kept,
            headers=headers,
            redacted=redacted,
            stored=cls.pack(provider, kept, headers, redacted),
        )


@dataclass(frozen=True, slots=True)
class StoredPoll(StoredOrigin):
    """A record a poll read from the provider's API, kept as its events' origin: no request
    came, so no headers; its events' trails begin "polled" and name it as ``origin``."""

    ARRIVAL: ClassVar[str] = "polled"
    TRAIL_FIELD: ClassVar[str] = "origin"

    @classmethod
    def of(cls, provider: str, record: bytes, redacted: bytes | None) -> StoredPoll:
        kept = record if redacted is None else redacted
        return cls(
            provider=provider,
            key=redis_keys.polled(origin_digest(record)),
            body=kept,
            headers={},
            redacted=redacted is not None,
            stored=cls.pack(provider, kept, {}, redacted is not None),
        )


#: What an origin kept as one string starts with (and its format's version): 3 compresses
#: the head line with the body (``StoredOrigin.pack``); 2 (up to issue 21's third pass)
#: kept the head line apart, uncompressed, its fields named by a letter (up to main
#: 8cd8f52 with when it came, ``t``); 1, written by main 60fe52f, spelt them out. All read.
ORIGIN_RECORD = b"po/3 "
ORIGIN_RECORD_2 = b"payhooks-origin/2 "
ORIGIN_RECORD_1 = b"payhooks-origin/1 "


def read_record(record: bytes) -> dict[str, Any]:
    if record.startswith(ORIGIN_RECORD):
        encoding, _, stored = record[len(ORIGIN_RECORD) :].partition(b"\n")
        head, _, body = bodies.unpack(stored, encoding.decode()).partition(b"\n")
        short = orjson.loads(head)
        return {
            "provider": short["p"],
            "body": body,
            "headers": short.get("h", {}),
            "redacted": bool(short.get("r")),
            "received_at": "",
        }
    if record.startswith(ORIGIN_RECORD_2):
        head, _, stored = record[len(ORIGIN_RECORD_2) :].partition(b"\n")
        short = orjson.loads(head)
        return {
            "provider": short["p"],
            "body": bodies.unpack(stored, short.get("e", "")),
            "headers": short.get("h", {}),
            "redacted": bool(short.get("r")),
            # Kept by releases up to main 8cd8f52; its events' trails say it since.
            "received_at": short.get("t", ""),
        }
    if record.startswith(ORIGIN_RECORD_1):
        head, _, stored = record[len(ORIGIN_RECORD_1) :].partition(b"\n")
        meta = orjson.loads(head)
        return {
            "provider": meta["provider"],
            "body": bodies.unpack(stored, meta["encoding"]),
            "headers": meta["headers"],
            "redacted": bool(meta["redacted"]),
            "received_at": meta["received_at"],
        }
    raise ValueError("not a kept webhook or polled record")


class Trail:
    """Reads and appends to the trail (workers and the ops commands)."""

    def __init__(self, redis: Redis, *, ttl_seconds: int) -> None:
        self._redis = redis
        self._ttl = ttl_seconds

    def append(
        self, event_key: str, stage: str, *, invoice_id: int | None = None, **fields: Any
    ) -> None:
        trail_key = redis_keys.trail(event_key)
        with self._redis.pipeline(transaction=False) as pipe:
            pipe.execute_command(*append_call(trail_key, self._ttl, entry(stage, **fields)))  # type: ignore[no-untyped-call]
            if invoice_id is not None:
                index = redis_keys.invoice_events(invoice_id)
                pipe.zadd(index, {event_key: now_ms()}, nx=True)
                pipe.expire(index, self._ttl)
            pipe.execute()

    def history(self, event_key: str) -> list[dict[str, Any]]:
        raw = self._redis.execute_command(*read_call(redis_keys.trail(event_key)))  # type: ignore[no-untyped-call]
        steps = read_entries(raw)
        log_unreadable(event_key, steps)
        return steps

    def events_for_invoice(self, invoice_id: int) -> list[str]:
        members = self._redis.zrange(redis_keys.invoice_events(invoice_id), 0, -1)
        return [text(k) for k in members if isinstance(k, bytes | str)]

    def find_event(self, reference: str) -> str | None:
        """The event key of a provider event id (or of ``provider:id``), whoever sent it."""
        if ":" in reference and self._redis.exists(redis_keys.trail(reference)):
            return reference
        pattern = redis_keys.trail("*:" + _glob_escape(reference))
        for found in self._redis.scan_iter(match=pattern, count=1000):
            return text(found).removeprefix(redis_keys.trail(""))
        return None

    def webhook(self, webhook_key: str) -> dict[str, Any] | None:
        """A stored origin (a webhook, or a polled record) as it was kept, whichever way
        (``StoredOrigin.record``, or a hash: 0.1.0's and unprocessed ones), its body as
        received (or redacted)."""
        if text(self._redis.type(webhook_key)) == "string":
            return read_record(cast(bytes, self._redis.get(webhook_key)))
        raw = self._redis.hgetall(webhook_key)
        if not raw:
            return None
        # Bytes: the client does not decode (the body is binary).
        stored: dict[str, bytes] = {text(k): cast(bytes, v) for k, v in raw.items()}
        return {
            "provider": text(stored["provider"]),
            # Bodies kept by 0.1.0 have no encoding: as received.
            "body": bodies.unpack(stored["body"], text(stored.get("encoding", b""))),
            "headers": json.loads(text(stored["headers"])),
            "redacted": text(stored["redacted"]) == "1",
            "received_at": text(stored["received_at"]),
        }


#: Verified webhooks that the code could not turn into events, by time received (a sorted
#: set of webhook keys). Each webhook hash then also holds ``unprocessed``: why. Kept as
#: long as the trail, for ``payhooks unprocessed`` to list and replay once the code is fixed.
UNPROCESSED = f"{redis_keys.PREFIX}:unprocessed"
