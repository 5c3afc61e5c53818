"""A kept webhook (or polled record) as one Redis string, read back whichever release wrote it."""

from __future__ import annotations

import hashlib

import orjson
import pytest

from payhooks.storage import bodies, redis_keys
from payhooks.storage.trail import (
    ORIGIN_RECORD,
    ORIGIN_RECORD_1,
    ORIGIN_RECORD_2,
    StoredPoll,
    StoredWebhook,
    origin_digest,
    read_record,
)
from tests.support.paths import FIXTURES

BODY = (FIXTURES / "gocardless_webhook_body.json").read_bytes()
AT = "2026-12-06T23:05:08.240403Z"


@pytest.mark.parametrize(
    ("headers", "redacted"),
    [({"Webhook-Signature": 'abc\nd"e'}, b'{"redacted":true}'), ({}, None)],
    ids=["headers, redacted", "neither"],
)
def test_read_back_as_kept(headers: dict[str, str], redacted: bytes | None) -> None:
    webhook = StoredWebhook.of("gocardless", BODY, headers, redacted)
    assert read_record(webhook.record()) == {
        "provider": "gocardless",
        "body": redacted or BODY,
        "headers": headers,
        "redacted": redacted is not None,
        # When it came is its events' trails' to say.
        "received_at": "",
    }


def test_the_head_names_only_what_is_there_briefly() -> None:
    # Kept EVENT_RETENTION_DAYS: the line before the body is about 20 bytes, not 120.
    record = StoredPoll.of("ezidebit", b"<Payment/>", None).record()
    encoding, _, stored = record[len(ORIGIN_RECORD) :].partition(b"\n")
    head = bodies.unpack(stored, encoding.decode()).partition(b"\n")[0]
    assert orjson.loads(head) == {"p": "ezidebit"}
    assert len(head) < 20


def test_a_signature_header_is_kept_compressed_with_the_body() -> None:
    # A Stripe-Signature header is 90 bytes, mostly hex digits: compressed with the body
    # (its name is in the dictionary) it costs a quarter less than in the head line the
    # release before kept apart, uncompressed (`,"h":{...}`).
    header = {"Stripe-Signature": "t=1796610678,v1=" + hashlib.sha256(BODY).hexdigest()}
    with_header = StoredWebhook.of("stripe", BODY, header, None).record()
    without = StoredWebhook.of("stripe", BODY, {}, None).record()
    kept_apart = len(b',"h":' + orjson.dumps(header))
    assert len(with_header) - len(without) < kept_apart * 0.75
    assert read_record(with_header)["headers"] == header
    # An incompressible body is kept as it came, after the head line.
    tiny = StoredWebhook.of("forte", b"{}", {}, None).record()
    assert tiny == ORIGIN_RECORD + b"\n" + b'{"p":"forte"}\n{}'
    assert read_record(tiny)["body"] == b"{}"


def test_a_record_of_the_second_pass_is_read() -> None:
    # As main 26e0759 wrote it (issue 21's second pass on): the head line apart.
    stored, encoding = bodies.pack(BODY)
    head = {"p": "gocardless", "e": encoding, "h": {"Webhook-Signature": "abc"}, "r": 1}
    old = ORIGIN_RECORD_2 + orjson.dumps(head) + b"\n" + stored
    assert read_record(old) == {
        "provider": "gocardless",
        "body": BODY,
        "headers": {"Webhook-Signature": "abc"},
        "redacted": True,
        "received_at": "",
    }


def test_a_record_of_the_release_before_with_its_time_is_read() -> None:
    # As main 8cd8f52 wrote it: the time it came in the head.
    stored, encoding = bodies.pack(BODY)
    head = {"p": "gocardless", "t": AT, "e": encoding, "h": {"Webhook-Signature": "abc"}}
    old = ORIGIN_RECORD_2 + orjson.dumps(head) + b"\n" + stored
    assert read_record(old) == {
        "provider": "gocardless",
        "body": BODY,
        "headers": {"Webhook-Signature": "abc"},
        "redacted": False,
        "received_at": AT,
    }


def test_an_origin_is_named_by_128_bits_of_its_digest() -> None:
    # Content-addressed: the same body is the same record, whoever delivers it again.
    webhook = StoredWebhook.of("gocardless", BODY, {}, None)
    assert webhook.key == redis_keys.webhook(hashlib.sha256(BODY).hexdigest()[:32])
    assert webhook.digest == origin_digest(BODY)
    # Named by what came, not by what is kept (a redacted body names its delivery).
    assert StoredWebhook.of("gocardless", BODY, {}, b"{}").key == webhook.key
    assert StoredPoll.of("ezidebit", BODY, None).key == redis_keys.polled(webhook.digest)


def test_a_record_of_the_release_before_is_read() -> None:
    # As main 60fe52f wrote it: the fields named in full.
    stored, encoding = bodies.pack(BODY)
    head = {
        "provider": "gocardless",
        "headers": {"Webhook-Signature": "abc"},
        "redacted": False,
        "encoding": encoding,
        "received_at": AT,
    }
    old = ORIGIN_RECORD_1 + orjson.dumps(head) + b"\n" + stored
    assert read_record(old) == {
        "provider": "gocardless",
        "body": BODY,
        "headers": {"Webhook-Signature": "abc"},
        "redacted": False,
        "received_at": AT,
    }
    with pytest.raises(ValueError, match="not a kept webhook"):
        read_record(b"payhooks-origin/9 {}\n")
