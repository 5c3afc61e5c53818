"""The event trail: what happened to every verified provider event, kept in Redis.

Per event, a list of JSON entries (``payhooks:trail:<provider>:<event id>``):
received (a webhook) or polled (a poll of the provider's API) -> enqueued | duplicate |
ignored -> (retrying ...) -> applied | ignored | failed. An event's trail is also its dedupe
record (payhooks/storage/record_once.py). Each event's origin is kept, zstd-compressed:
per webhook request, its verified body and signature headers (``payhooks:webhook:<sha256>``),
so the event can be re-verified or re-normalised; per polled record, the record as the
provider's API gave it (``payhooks:polled:<sha256>``). Each is one string
(``StoredOrigin.record``); a webhook kept as unprocessed, or by 0.1.0, is a hash. Card and
bank details are redacted before storing (then only re-normalisation is possible).
Per invoice, the events that named it. Everything expires after EVENT_RETENTION_DAYS.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from typing import Any, ClassVar, cast

import orjson
from redis import Redis

from payhooks.logs import utc_text
from payhooks.storage import bodies, redis_keys
from payhooks.storage.redis_keys import text


def _glob_escape(value: str) -> str:
    return "".join(f"\\{ch}" if ch in "*?[]\\" else ch for ch in value)


def now_iso() -> str:
    return utc_text(time.time())


def entry(stage: str, **fields: Any) -> str:
    return entry_at(now_iso(), stage, **fields)


def entry_at(at: str, stage: str, **fields: Any) -> str:
    """One trail entry as JSON (compact, in this order: at, stage, then the fields)."""
    return orjson.dumps({"at": at, "stage": stage, **fields}).decode()


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
    #: ``body`` as Redis keeps it, and how (payhooks/storage/bodies.py).
    stored_body: bytes = b""
    encoding: str = ""

    #: How its events' trails begin, and the field that names it there.
    ARRIVAL: ClassVar[str] = "received"
    TRAIL_FIELD: ClassVar[str] = "webhook"

    @property
    def headers_json(self) -> str:
        return orjson.dumps(self.headers).decode()

    def record(self, received_at: str) -> bytes:
        """The origin as one Redis string: a JSON line saying what it is, then the body
        as stored (a hash would take a few hundred bytes more: its body is over the 64
        bytes a compact hash holds). The line's fields are named by a letter and left out
        when empty: it is kept EVENT_RETENTION_DAYS, and a body kept with the dictionary
        is often smaller than a line with the names spelt out."""
        head: dict[str, Any] = {"p": self.provider, "t": received_at}
        if self.encoding:
            head["e"] = self.encoding
        if self.headers:
            head["h"] = self.headers
        if self.redacted:
            head["r"] = 1
        return ORIGIN_RECORD + orjson.dumps(head) + b"\n" + self.stored_body

    def mapping(self) -> dict[str, str | bytes]:
        """The origin as a hash: how 0.1.0 kept every webhook, and how an unprocessed one is
        kept (its hash also holds why)."""
        return {
            "provider": self.provider,
            "body": self.stored_body,
            "encoding": self.encoding,
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
        digest = hashlib.sha256(body).hexdigest()
        kept = body if redacted_body is None else redacted_body
        stored, encoding = bodies.pack(kept)
        return cls(
            provider=provider,
            key=redis_keys.webhook(digest),
            body=kept,
            headers=headers,
            redacted=redacted_body is not None,
            stored_body=stored,
            encoding=encoding,
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
        stored, encoding = bodies.pack(kept)
        return cls(
            provider=provider,
            key=redis_keys.polled(hashlib.sha256(record).hexdigest()),
            body=kept,
            headers={},
            redacted=redacted is not None,
            stored_body=stored,
            encoding=encoding,
        )


#: What an origin kept as one string starts with (and its format's version): 2 names the
#: head's fields by a letter (``StoredOrigin.record``); 1, written by the release before
#: (main 60fe52f), spelt them out, and is still read.
ORIGIN_RECORD = b"payhooks-origin/2 "
ORIGIN_RECORD_1 = b"payhooks-origin/1 "


def read_record(record: bytes) -> dict[str, Any]:
    if record.startswith(ORIGIN_RECORD):
        head, _, stored = record[len(ORIGIN_RECORD) :].partition(b"\n")
        short = orjson.loads(head)
        return {
            "provider": short["p"],
            "body": bodies.unpack(stored, short.get("e", "")),
            "headers": short.get("h", {}),
            "redacted": bool(short.get("r")),
            "received_at": short["t"],
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
            pipe.rpush(trail_key, entry(stage, **fields))
            pipe.expire(trail_key, self._ttl)
            if invoice_id is not None:
                index = redis_keys.invoice_events(invoice_id)
                pipe.zadd(index, {event_key: time.time()}, nx=True)
                pipe.expire(index, self._ttl)
            pipe.execute()

    def history(self, event_key: str) -> list[dict[str, Any]]:
        return [json.loads(item) for item in self._redis.lrange(redis_keys.trail(event_key), 0, -1)]

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
