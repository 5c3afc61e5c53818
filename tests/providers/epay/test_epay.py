"""ePay: GET callbacks, the MD5 over the values in received order, minor units."""

from __future__ import annotations

from decimal import Decimal
from urllib.parse import parse_qsl, urlencode

import pytest
from aiohttp.test_utils import TestClient
from redis import Redis
from rq import Queue

from payhooks.devtools.sandbox.nexudus import SandboxState
from payhooks.domain.events import PaymentEvent
from payhooks.providers.epay import sample as samples
from payhooks.providers.epay.receiver import EPayCallback
from payhooks.providers.epay.settings import EPaySettings
from payhooks.providers.epay.stand_in import EPayState
from payhooks.providers.kit.receiver_errors import InvalidSignature
from payhooks.settings import Settings
from tests.support.delivery import deliver, finished, queued_job
from tests.support.processes import RunWorker, run_burst_worker
from tests.support.settings import EPAY_SECRET, with_section


def test_published_vector_verifies() -> None:
    # tech.epay.dk/MD5_6.html: md5("20820000Order1ABC") = 18aa5a1a173e5e5e6245a620b814f176
    query = b"currency=208&amount=20000&orderid=Order1&hash=18aa5a1a173e5e5e6245a620b814f176"
    EPayCallback(EPaySettings(md5_secrets=("ABC",))).verify(query, {})
    reordered = b"amount=20000&currency=208&orderid=Order1&hash=18aa5a1a173e5e5e6245a620b814f176"
    with pytest.raises(InvalidSignature):
        EPayCallback(EPaySettings(md5_secrets=("ABC",))).verify(
            reordered, {}
        )  # order is part of what is hashed


async def test_hashed_callback_is_queued_once(client: TestClient, queue: Queue) -> None:
    query = samples.signed_query(samples.callback(orderid="42", amount_minor=10000), EPAY_SECRET)
    first = await client.get(f"/webhooks/epay?{query}")
    second = await client.get(f"/webhooks/epay?{query}")
    assert (first.status, (await first.json())["status"]) == (200, "accepted")
    assert (await second.json())["status"] == "duplicate"
    assert queue.count == 1


@pytest.mark.parametrize("tamper", ["amount", "hash", "missing"])
async def test_bad_hash_is_400_and_queues_nothing(
    client: TestClient, queue: Queue, tamper: str
) -> None:
    parameters = samples.callback(orderid="42", amount_minor=10000)
    query = samples.signed_query(parameters, EPAY_SECRET)
    if tamper == "amount":
        query = query.replace("amount=10000", "amount=1")
    elif tamper == "hash":
        query = samples.signed_query(parameters, "another secret")
    else:
        query = urlencode(parameters)
    response = await client.get(f"/webhooks/epay?{query}")
    assert (response.status, (await response.json())["error"]) == (400, "invalid_signature")
    assert queue.count == 0


def test_normalised_from_minor_units_and_numeric_currency() -> None:
    parameters = samples.callback(orderid="INV-7", amount_minor=12345, currency="208", txnid=99)
    query = samples.signed_query(parameters, EPAY_SECRET).encode()
    [event] = EPayCallback(EPaySettings(md5_secrets=(EPAY_SECRET,))).normalise(query, {})
    assert isinstance(event, PaymentEvent)
    assert (event.token, event.invoice.number, event.amount, event.currency) == (
        "99",
        "INV-7",
        Decimal("123.45"),
        "DKK",
    )
    assert event.regular_payment_provider == 7


def test_callback_marks_the_invoice_paid(
    settings: Settings, sandbox_state: SandboxState, epay_state: EPayState, run_worker: RunWorker
) -> None:
    parameters = samples.callback(orderid="42", amount_minor=10000, currency="978")
    register(epay_state, parameters)
    deliver(settings, "epay", samples.signed_query(parameters, EPAY_SECRET).encode())
    run_worker()
    [token] = sandbox_state.tokens.values()
    assert (token["Token"], token["RegularPaymentProvider"]) == (parameters[0][1], 7)
    assert sandbox_state.invoices[42]["PaidOn"] is not None


def test_card_number_is_redacted() -> None:
    parameters = samples.callback(orderid="42", amount_minor=100)
    query = samples.signed_query(parameters, EPAY_SECRET).encode()
    redacted = EPayCallback(EPaySettings(md5_secrets=(EPAY_SECRET,))).redact(query)
    assert redacted is not None
    assert b"444444XXXXXX4444" not in redacted
    assert b"cardno=%5Bredacted%5D" in redacted


def register(
    state: EPayState, parameters: list[tuple[str, str]], status: str = "PAYMENT_CAPTURED"
) -> None:
    """ePay's record of the transaction, as ``gettransaction``'s transactionInformation
    names its fields (status, authamount, capturedamount, creditedamount)."""
    values = dict(parameters)
    state.transactions[values["txnid"]] = {
        "orderid": values["orderid"],
        "authamount": values["amount"],
        "currency": values["currency"],
        "status": status,
        "capturedamount": values["amount"] if status == "PAYMENT_CAPTURED" else "0",
        "creditedamount": "0",
    }


def test_an_authorisation_not_captured_is_pending_not_paid(
    settings: Settings,
    sandbox_state: SandboxState,
    epay_state: EPayState,
    run_worker: RunWorker,
    queue: Queue,
) -> None:
    """ePay calls back on authorisation; the money moves only on capture (ePay's payment web
    service documentation, "Data flow"). PAYMENT_NEW is a token, not PaidOn."""
    parameters = samples.callback(orderid="42", amount_minor=10000, currency="978")
    register(epay_state, parameters, status="PAYMENT_NEW")
    deliver(settings, "epay", samples.signed_query(parameters, EPAY_SECRET).encode())
    run_worker()
    [token] = sandbox_state.tokens.values()
    assert token["Token"] == parameters[0][1]
    assert sandbox_state.invoices[42]["PaidOn"] is None
    assert finished(queue.connection, f"epay:{parameters[0][1]}") == "token_only"


def test_a_partial_capture_counts_what_was_captured(
    settings: Settings, sandbox_state: SandboxState, epay_state: EPayState, run_worker: RunWorker
) -> None:
    parameters = samples.callback(orderid="42", amount_minor=10000, currency="978")
    register(epay_state, parameters)
    epay_state.transactions[parameters[0][1]]["capturedamount"] = "6000"  # 60.00 of 100.00
    deliver(settings, "epay", samples.signed_query(parameters, EPAY_SECRET).encode())
    run_worker()
    [token] = sandbox_state.tokens.values()
    assert "60.00 of 100.00" in token["Notes"]
    assert sandbox_state.invoices[42]["PaidOn"] is None


def test_a_rearranged_callback_is_not_recorded(
    settings: Settings,
    sandbox_state: SandboxState,
    epay_state: EPayState,
    run_worker: RunWorker,
    queue: Queue,
) -> None:
    """Values joined without separators: moving a digit from txnid to orderid keeps the hash.
    Only ePay's own record of the transaction tells the forgery apart."""
    genuine = [("txnid", "12345674"), ("orderid", "2"), ("amount", "10000"), ("currency", "978")]
    register(epay_state, genuine)
    forged = [("txnid", "1234567"), ("orderid", "42"), ("amount", "10000"), ("currency", "978")]
    epay_state.transactions["1234567"] = {
        "orderid": "999",
        "authamount": "500",
        "currency": "978",
        "status": "PAYMENT_CAPTURED",
        "capturedamount": "500",
    }
    query = samples.signed_query(genuine, EPAY_SECRET)
    forged_query = urlencode([*forged, ("hash", dict(parse_qsl(query))["hash"])])
    EPayCallback(EPaySettings(md5_secrets=(EPAY_SECRET,))).verify(
        forged_query.encode(), {}
    )  # the hash still matches
    deliver(settings, "epay", forged_query.encode())
    run_worker()
    assert sandbox_state.calls == []
    job = queued_job(queue.connection, "epay:1234567")
    assert "does not match ePay's record" in job.meta["failure"]["reason"]


def test_without_a_merchant_number_nothing_is_recorded(
    settings: Settings, sandbox_state: SandboxState, redis: Redis, queue: Queue
) -> None:
    bare = with_section(settings, EPaySettings, merchant_number=None)
    query = samples.signed_query(samples.callback(orderid="42", amount_minor=10000), EPAY_SECRET)
    deliver(bare, "epay", query.encode())
    run_burst_worker(bare, redis, queue)
    assert sandbox_state.calls == []
