"""Bodies are kept zstd-compressed with dictionary d1, and read back whatever wrote them."""

from __future__ import annotations

import hashlib
import json
from importlib.resources import files

import pytest
import zstandard

from payhooks.providers.stripe import sample as stripe_samples
from payhooks.storage import bodies
from tests.support.paths import FIXTURES

#: d1 never changes once released: every body kept with it needs it to be read.
D1_SHA256 = "017152e8848fb38fda1a8b62c6fee65922324706db89c9de08bf589a7786da81"


def test_the_dictionary_is_the_one_bodies_were_kept_with() -> None:
    d1 = files("payhooks.storage").joinpath("dictionaries/d1.raw").read_bytes()
    assert hashlib.sha256(d1).hexdigest() == D1_SHA256


@pytest.mark.parametrize(
    "body",
    [
        json.dumps(stripe_samples.paid_event(42), indent=2).encode(),
        (FIXTURES / "gocardless_webhook_body.json").read_bytes(),
        (FIXTURES / "paypal" / "capture_refunded.json").read_bytes(),
        b"x",
    ],
    ids=["stripe", "gocardless", "paypal", "tiny"],
)
def test_kept_with_the_dictionary_and_read_back(body: bytes) -> None:
    stored, encoding = bodies.pack(body)
    assert bodies.unpack(stored, encoding) == body
    if encoding:
        assert encoding == bodies.ZSTD_D1
        assert len(stored) < len(zstandard.ZstdCompressor(level=bodies.LEVEL).compress(body))


def test_a_providers_body_keeps_far_less_than_with_zstd_alone() -> None:
    # A payment_intent.succeeded as Stripe sends it (its own fixture): a quarter or less.
    fixture = json.loads((FIXTURES / "stripe_openapi_fixtures.json").read_text())
    intent = dict(fixture["fixtures3"]["payment_intent"], id="pi_3QbTq2LkdIwHu7ix1mAbCdEf")
    body = json.dumps(stripe_samples.event("payment_intent.succeeded", intent), indent=2).encode()
    alone = zstandard.ZstdCompressor(level=bodies.LEVEL).compress(body)
    stored, _ = bodies.pack(body)
    assert len(stored) * 3 < len(alone)


def test_bodies_kept_before_the_dictionary_and_as_received_are_read() -> None:
    body = (FIXTURES / "forte" / "transaction_sale_webhook.json").read_bytes()
    before = zstandard.ZstdCompressor(level=3).compress(body)  # the release before d1
    assert bodies.unpack(before, bodies.ZSTD) == body
    assert bodies.unpack(body, "") == body  # 0.1.0: as received
    with pytest.raises(ValueError, match="unknown body encoding 'br'"):
        bodies.unpack(body, "br")
