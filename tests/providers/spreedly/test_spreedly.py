"""Spreedly (MultiGateway): XML callbacks, each transaction verified on its own signed block,
then read back from Spreedly's API before any money is recorded.

Spreedly's "Signed Requests" page gives two worked examples (docs.spreedly.com/guides/
offsite-payments/signed-requests/, 2012 dates; developer.spreedly.com/docs/signed-requests,
2021 dates): each a secret, a <transactions> callback and the signature it carries; public
clients copy them (laratusk/spreedly-php tests/Fixtures/transactions/offsite_callback.json
for the second). Both are reproduced here as published."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from aiohttp.test_utils import TestClient
from redis import Redis
from rq import Queue

from payhooks.devtools.sandbox.nexudus import SandboxState
from payhooks.domain.events import Ignored, InvoiceRef, PaymentEvent, PaymentKind
from payhooks.providers.kit.step_errors import ProviderLookupError
from payhooks.providers.spreedly import sample as samples
from payhooks.providers.spreedly.formats import (
    CallbackRefused,
    amount_of,
    signature_of,
    verify_transactions,
)
from payhooks.providers.spreedly.receiver import SpreedlyWebhook
from payhooks.providers.spreedly.settings import SpreedlySettings
from payhooks.providers.spreedly.stand_in import SpreedlyState, transaction_record
from payhooks.providers.spreedly.step import SpreedlyStep
from payhooks.settings import ConfigError, Settings
from payhooks.storage.trail import Trail
from tests.support.client import post_webhook
from tests.support.delivery import finished
from tests.support.settings import with_section

XML = {"Content-Type": "application/xml"}
SECRET = samples.DEV_SIGNING_SECRET

#: docs.spreedly.com's example: its secret, callback and signature, as published.
PUBLISHED_2012_SECRET = "RKOCG5D8D3fZxDSg504D0IxU2XD4Io5VXmyzdCtTivHFTTSylzM2ZzTWFwVH4ucG"
PUBLISHED_2012 = b"""<transactions>
  <transaction>
    <amount type="integer">100</amount>
    <on_test_gateway type="boolean">false</on_test_gateway>
    <created_at type="datetime">2012-09-10T20:35:10Z</created_at>
    <updated_at type="datetime">2012-09-10T20:35:11Z</updated_at>
    <currency_code>USD</currency_code>
    <succeeded type="boolean">true</succeeded>
    <state>succeeded</state>
    <token>5AG4P7FPjlfIA6aED6AgZvUEehx</token>
    <transaction_type>OffsitePurchase</transaction_type>
    <order_id nil="true"></order_id>
    <ip nil="true"></ip>
    <callback_url>http://example.com/handle_callback</callback_url>
    <signed>
      <signature>b81436daf0d695404c5bf7a2aecf049d460bb6e1</signature>
      <fields>amount callback_url created_at currency_code ip on_test_gateway order_id state succeeded token transaction_type updated_at</fields>
      <algorithm>sha1</algorithm>
    </signed>
  </transaction>
</transactions>"""
#: developer.spreedly.com's example (the same page, re-dated, an https callback URL).
PUBLISHED_2021_SECRET = "4ziASKWGGV1zdrUbSN6vq2CjjDPw2hzJSvsGLhxces1aORBKKsRyJwb8DfGQ6J3q"
PUBLISHED_2021 = (
    PUBLISHED_2012.replace(b"2012-09-10", b"2021-04-07")
    .replace(b"http://example.com", b"https://example.com")
    .replace(
        b"b81436daf0d695404c5bf7a2aecf049d460bb6e1", b"f02c1189622670b0c5ab970f0f5b65e6d91cf817"
    )
)


def purchase(state: SpreedlyState, token: str, invoice: str = "42", **record: object) -> bytes:
    """Spreedly knows the transaction; its callback, signed with the dev secret."""
    state.transactions[token] = transaction_record(
        token,
        invoice=invoice,
        amount="100.00",
        **record,  # type: ignore[arg-type]
    )
    return samples.callback(
        samples.transaction_xml(samples.values_for(state.transactions[token]), SECRET)
    )


def receiver(settings: Settings) -> SpreedlyWebhook:
    return SpreedlyWebhook.from_settings(settings)


@pytest.mark.parametrize(
    ("body", "secret"),
    [(PUBLISHED_2012, PUBLISHED_2012_SECRET), (PUBLISHED_2021, PUBLISHED_2021_SECRET)],
    ids=["docs.spreedly.com", "developer.spreedly.com"],
)
def test_spreedlys_published_signed_examples_verify(body: bytes, secret: str) -> None:
    (verified,) = verify_transactions(body, ["another secret first", secret])
    assert verified.token == "5AG4P7FPjlfIA6aED6AgZvUEehx"
    assert verified.values["order_id"] == ""  # nil="true" signs as the empty string
    with pytest.raises(CallbackRefused, match="signature does not match"):
        verify_transactions(body, ["not-the-signing-secret"])
    # The access secret is never the signing secret: only SPREEDLY_SIGNING_SECRETS are tried.


def test_settings_turn_the_url_on_and_check_the_provider_value() -> None:
    section = SpreedlySettings.from_env({"SPREEDLY_SIGNING_SECRETS": "a,b"})
    assert section.signing_secrets == ("a", "b")  # several, for rotation
    assert section.urls("spreedly") == ["spreedly"]
    assert (section.provider_value, section.api_url) == (1, "https://core.spreedly.com")
    assert "'a'" not in repr(section)  # secrets stay out of repr
    with pytest.raises(ConfigError, match="SPREEDLY_PROVIDER_VALUE"):
        SpreedlySettings(provider_value=20).check()
    with pytest.raises(ConfigError, match="https"):
        SpreedlySettings(api_url="http://core.spreedly.com").check()


async def test_a_signed_purchase_is_confirmed_with_the_api_and_pays_its_invoice(
    client: TestClient,
    queue: Queue,
    run_worker: Callable[[], None],
    sandbox_state: SandboxState,
    spreedly_state: SpreedlyState,
) -> None:
    body = purchase(spreedly_state, "PurchaseToken0000000000001", invoice="42")
    for expected in ("accepted", "duplicate"):  # Spreedly retries until it gets a 200
        status, answer = await post_webhook(client, "spreedly", body, XML)
        assert (status, answer["status"]) == (200, expected)
    assert queue.count == 1
    run_worker()
    assert sandbox_state.invoices[42]["Paid"] is True
    (token,) = [t for t in sandbox_state.tokens.values() if t["CoworkerInvoiceId"] == 42]
    assert (token["RegularPaymentProvider"], token["Token"]) == (1, "PurchaseToken0000000000001")
    assert spreedly_state.lookups == 1
    assert finished(queue.connection, "spreedly:PurchaseToken0000000000001:succeeded") == "applied"


def _tampered_amount() -> bytes:
    values = {**samples.values_for(_record()), "amount": "1"}
    signed = samples.transaction_xml(samples.values_for(_record()), SECRET)
    return samples.callback(
        signed.replace("<amount>10000</amount>", f"<amount>{values['amount']}</amount>")
    )


def _record() -> dict[str, object]:
    record = transaction_record("HostileToken00000000000001", invoice="43", amount="100.00")
    record["created_at"] = record["updated_at"] = "2026-12-01T10:00:00Z"
    return record


def _signed_with(fields: str, algorithm: str = "sha1") -> bytes:
    return samples.callback(
        samples.transaction_xml(
            samples.values_for(_record()), SECRET, fields=fields, algorithm=algorithm
        )
    )


def _duplicate_amount() -> bytes:
    signed = samples.transaction_xml(samples.values_for(_record()), SECRET)
    # A second <amount> after the signed one: which would a reader take?
    return samples.callback(signed.replace("<signed>", "<amount>1</amount><signed>"))


def _unsigned_beside_a_genuine() -> bytes:
    genuine = samples.transaction_xml(samples.values_for(_record()), SECRET)
    unsigned = genuine.split("<signed>")[0].replace("HostileToken00000000000001", "Other") + (
        "</transaction>"
    )
    return samples.callback(genuine, unsigned)


def _entities() -> bytes:
    genuine = samples.transaction_xml(samples.values_for(_record()), SECRET)
    return (
        b'<?xml version="1.0"?><!DOCTYPE transactions [<!ENTITY t "HostileToken">]>'
        + samples.callback(genuine)
    )


def _md5() -> bytes:
    values = samples.values_for(_record())
    message = "|".join(values.get(n) or "" for n in samples.SIGNED_FIELDS.split())
    import hashlib
    import hmac

    md5 = hmac.new(SECRET.encode(), message.encode(), hashlib.md5).hexdigest()
    signed = samples.transaction_xml(values, SECRET)
    start = signed.index("<signature>") + len("<signature>")
    end = signed.index("</signature>")
    return samples.callback(
        (signed[:start] + md5 + signed[end:]).replace(
            "<algorithm>sha1</algorithm>", "<algorithm>md5</algorithm>"
        )
    )


HOSTILE = {
    "tampered signed field": _tampered_amount,
    "unsigned transaction beside a genuine one": _unsigned_beside_a_genuine,
    "algorithm md5": _md5,
    "amount not signed": lambda: _signed_with(
        "callback_url created_at currency_code state succeeded token transaction_type"
    ),
    "transaction_type not signed": lambda: _signed_with(
        "amount currency_code state succeeded token"
    ),
    "a signed field listed twice": lambda: _signed_with(samples.SIGNED_FIELDS + " amount"),
    "duplicate element of a signed field": _duplicate_amount,
    "xml entities": _entities,
    "not xml": lambda: b"amount=100&token=x",
}


@pytest.mark.parametrize("make", HOSTILE.values(), ids=HOSTILE.keys())
async def test_hostile_callbacks_are_refused_with_4xx_and_nothing_is_queued(
    client: TestClient, queue: Queue, make: Callable[[], bytes]
) -> None:
    status, answer = await post_webhook(client, "spreedly", make(), XML)
    assert 400 <= status < 500, answer
    assert queue.count == 0


def test_one_bad_transaction_refuses_the_callback_whole_and_a_good_pair_verifies(
    settings: Settings,
) -> None:
    one = samples.transaction_xml(samples.values_for(_record()), SECRET)
    other_record = {**_record(), "token": "SecondToken000000000000001"}
    two = samples.transaction_xml(samples.values_for(other_record), SECRET)
    assert len(verify_transactions(samples.callback(one, two), [SECRET])) == 2
    forged = samples.transaction_xml(samples.values_for(other_record), "a guess")
    with pytest.raises(CallbackRefused, match="transaction 2: signature does not match"):
        verify_transactions(samples.callback(one, forged), [SECRET])
    # sha256 and sha512 are accepted, with any configured secret (rotation).
    for algorithm in ("sha256", "sha512"):
        body = samples.callback(
            samples.transaction_xml(samples.values_for(_record()), "old", algorithm=algorithm)
        )
        assert verify_transactions(body, [SECRET, "old"])


@pytest.mark.parametrize(
    ("transaction_type", "on_test_gateway", "expected"),
    [
        ("Purchase", False, PaymentEvent),
        ("Authorization", False, Ignored),
        ("Verify", False, Ignored),
        ("Void", False, Ignored),
        ("AddPaymentMethod", False, Ignored),
        ("Purchase", True, Ignored),
    ],
)
def test_only_money_transactions_off_the_test_gateway_become_events(
    settings: Settings, transaction_type: str, on_test_gateway: bool, expected: type
) -> None:
    record = {**_record(), "transaction_type": transaction_type, "on_test_gateway": on_test_gateway}
    body = samples.callback(samples.transaction_xml(samples.values_for(record), SECRET))
    (found,) = receiver(settings).normalise(body, {})
    assert isinstance(found, expected)
    assert found.event_id == "HostileToken00000000000001:succeeded"


def _event(token: str, transaction_type: str = "Purchase") -> PaymentEvent:
    return PaymentEvent(
        provider="spreedly",
        event_id=f"{token}:succeeded",
        event_type=f"{transaction_type}.succeeded",
        kind=PaymentKind.PENDING,
        token=token,
        invoice=InvoiceRef(),
        amount=None,
        currency=None,
        occurred_at=datetime(2026, 12, 1, tzinfo=UTC),
        object_id=token,
        details={"transaction_type": transaction_type},
    )


def test_the_step_takes_kind_money_and_invoice_from_the_api_record_only(
    settings: Settings, redis: Redis, spreedly_state: SpreedlyState
) -> None:
    step = SpreedlyStep.from_settings(settings, redis, Trail(redis, ttl_seconds=60))
    books = spreedly_state.transactions
    books["Yen"] = transaction_record("Yen", invoice="INV-9", amount="1000", currency="JPY")
    paid = step(_event("Yen"))
    assert (paid.kind, paid.amount, paid.currency) == (PaymentKind.PAID, Decimal(1000), "JPY")
    assert books["Yen"]["amount"] == 1000  # zero-decimal: minor units are yen
    assert paid.invoice == InvoiceRef(number="INV-9")
    books["Refund"] = transaction_record(
        "Refund", invoice="42", amount="40.00", transaction_type="Credit", reference_token="Yen"
    )
    refund = step(_event("Refund", "Credit"))
    assert (refund.kind, refund.token, refund.amount) == (
        PaymentKind.REFUNDED,
        "Yen",
        Decimal("40.00"),
    )
    for state, kind in (("failed", PaymentKind.FAILED), ("pending", PaymentKind.PENDING)):
        books[state] = transaction_record(state, invoice="42", amount="1.00", state=state)
        assert step(_event(state)).kind is kind
    books["Test"] = transaction_record("Test", invoice="42", amount="1.00", on_test_gateway=True)
    with pytest.raises(ProviderLookupError, match="test gateway"):
        step(_event("Test"))
    allowed = with_section(settings, SpreedlySettings, allow_test_gateway=True)
    allowed_step = SpreedlyStep.from_settings(allowed, redis, Trail(redis, ttl_seconds=60))
    assert allowed_step(_event("Test")).kind is PaymentKind.PAID
    with pytest.raises(ProviderLookupError, match="not what its callback said"):
        step(_event("Yen", "Credit"))
    assert amount_of({"amount": True, "currency_code": "USD"}) is None
    assert amount_of({"amount": 1050, "currency_code": "usd"}) == (Decimal("10.50"), "USD")
    assert signature_of("k", "sha1", "m") != signature_of("k", "sha256", "m")
