"""Forte: a URL token of ours, Forte's published webhook, and the API's word on money."""

from __future__ import annotations

import json
import logging
from decimal import Decimal
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from rq import Queue

from payhooks.devtools.sandbox.nexudus import SandboxState
from payhooks.domain.messages import body_digest
from payhooks.providers.forte import sample as samples
from payhooks.providers.forte.settings import ForteSettings
from payhooks.providers.forte.stand_in import LOCATION_ID, ForteState, transaction_record
from payhooks.settings import ConfigError, Settings
from payhooks.storage.jobs import event_key_of
from tests.support.client import post_webhook
from tests.support.delivery import deliver, queued_job
from tests.support.paths import FIXTURES
from tests.support.processes import RunWorker, run_burst_worker
from tests.support.settings import with_section, with_settings

# Forte's only published webhook body (support.forte.net article 1000102770; see the README
# beside it): a card sale, "ready", 5, for order "invoice-1234".
PUBLISHED = (FIXTURES / "forte" / "transaction_sale_webhook.json").read_bytes()
PUBLISHED_ID = "trn_9414a6eb-9951-4e9f-9679-3c731c8b6f96"
TOKEN = samples.DEV_URL_TOKEN
JSON = {"Content-Type": "application/json"}


@pytest.fixture
def forte_state() -> ForteState:
    """The Forte stand-in's transactions (the sandbox fixture serves it)."""
    return ForteState()


#: The date of Forte's published sample (the samples and stand-in are dated now by default).
RECEIVED = "2026-12-01T09:12:10.5607107-07:00"


def sale(forte: ForteState, transaction_id: str, **record: Any) -> bytes:
    """Forte knows the sale; the webhook announcing it, as Forte's sample shapes it."""
    forte.transactions[transaction_id] = transaction_record(
        transaction_id,
        **{"order_number": "42", "amount": "100.00", "received_date": RECEIVED, **record},
    )
    return json.dumps(samples.webhook(transaction_id, received_date=RECEIVED)).encode()


async def test_published_webhook_is_queued_once_under_the_url_token(
    client: TestClient, queue: Queue
) -> None:
    for expected in ("accepted", "duplicate"):  # Forte redelivers until it gets a 200
        status, answer = await post_webhook(client, f"forte/{TOKEN}", PUBLISHED, JSON)
        assert (status, answer["status"]) == (200, expected)
    assert queue.count == 1
    key = f"forte:{PUBLISHED_ID}:ready:{body_digest(PUBLISHED)}"
    assert event_key_of(queued_job(queue.connection, key)) == key


@pytest.mark.parametrize("path", ["forte/not-our-token-but-just-as-long-as-one", "forte"])
async def test_a_url_without_our_token_does_not_exist(
    client: TestClient, queue: Queue, path: str
) -> None:
    # Answered as a URL that does not exist, whatever the method: no sign Forte is enabled.
    for method in ("POST", "GET", "PUT"):
        response = await client.request(method, f"/webhooks/{path}", data=PUBLISHED)
        missing = await client.request(method, "/webhooks/no-such-provider", data=PUBLISHED)
        assert response.status == missing.status == 404
        assert await response.text() == await missing.text()
        assert response.headers.get("Connection") == missing.headers.get("Connection")
    assert queue.count == 0


async def test_past_the_token_a_wrong_method_is_405(client: TestClient) -> None:
    response = await client.get(f"/webhooks/forte/{TOKEN}")
    assert (response.status, response.headers["Allow"]) == (405, "POST")


async def test_the_token_never_reaches_a_log_or_the_trail(
    client: TestClient, queue: Queue, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    await post_webhook(client, f"forte/{TOKEN}", PUBLISHED, JSON)
    await post_webhook(client, f"forte/{TOKEN}", b"{not json", JSON)
    # The test server's access log is the test client's; `payhooks serve` writes none.
    ours = [r.getMessage() + str(r.__dict__) for r in caplog.records if r.name != "aiohttp.access"]
    assert ours
    assert not any(TOKEN in line for line in ours)
    stored = b"".join(v for k in queue.connection.scan_iter() for v in _values(queue, k))
    assert TOKEN.encode() not in stored


def _values(queue: Queue, key: bytes) -> list[bytes]:
    redis = queue.connection
    kind = redis.type(key)
    if kind == b"string":
        return [redis.get(key) or b""]
    if kind == b"hash":
        return [v for pair in redis.hgetall(key).items() for v in pair]
    if kind == b"list":
        return list(redis.lrange(key, 0, -1))
    return []


async def test_customer_webhooks_are_acknowledged_and_unreadable_ones_kept(
    client: TestClient, queue: Queue
) -> None:
    customer = json.dumps({"customer": {"customer_token": "cst_1"}}).encode()
    status, answer = await post_webhook(client, f"forte/{TOKEN}", customer, JSON)
    assert (status, answer["status"], answer["ignored"]) == (200, "ignored", 1)
    # Past our token it is ours: kept and acknowledged (Forte would retry it for hours).
    status, answer = await post_webhook(client, f"forte/{TOKEN}", b'{"transaction": 7}', JSON)
    assert (status, answer["status"]) == (200, "unprocessed")
    assert queue.count == 0


def test_published_sale_is_recorded_from_the_api_not_the_webhook(
    settings: Settings,
    sandbox_state: SandboxState,
    forte_state: ForteState,
    run_worker: RunWorker,
) -> None:
    # The webhook says 5; Forte's record of the same sale says 100.00: the record wins.
    sandbox_state.invoices[42]["InvoiceNumber"] = "invoice-1234"
    forte_state.transactions[PUBLISHED_ID] = transaction_record(
        PUBLISHED_ID, order_number="invoice-1234", amount="100.00", received_date=RECEIVED
    )
    deliver(settings, "forte", PUBLISHED)
    run_worker()
    [token] = sandbox_state.tokens.values()
    assert (token["Token"], token["RegularPaymentProvider"]) == (PUBLISHED_ID, 3)
    # Paid when Forte received it, by Forte's record (2026-12-01T09:12:10.56-07:00).
    assert sandbox_state.invoices[42]["PaidOn"].startswith("2026-12-01T16:12:10")
    assert forte_state.lookups == 1


@pytest.mark.parametrize(
    ("record", "paid", "tokens"),
    [
        ({"status": "declined"}, False, 0),
        ({"status": "voided"}, False, 0),
        ({"status": "ready", "echeck": True}, False, 1),  # an eCheck not yet funded: pending
        ({"status": "funded", "echeck": True}, True, 1),
        ({"status": "settled"}, True, 1),
    ],
)
def test_the_apis_status_decides_what_the_sale_means(
    settings: Settings,
    sandbox_state: SandboxState,
    forte_state: ForteState,
    run_worker: RunWorker,
    record: dict[str, Any],
    paid: bool,
    tokens: int,
) -> None:
    # The webhook always says "ready": only the API's answer may move money.
    deliver(settings, "forte", sale(forte_state, "trn_b1", **record))
    run_worker()
    assert (sandbox_state.invoices[42]["PaidOn"] is not None) is paid
    assert len(sandbox_state.tokens) == tokens


def test_a_sale_forte_does_not_know_is_retried_then_fails_without_money(
    settings: Settings, sandbox_state: SandboxState, forte_state: ForteState, queue: Queue
) -> None:
    forged = json.dumps(samples.webhook("trn_forged")).encode()
    quick = with_settings(settings, job_max_attempts=2, job_retries_in_place=1)
    deliver(quick, "forte", forged)
    run_burst_worker(quick, queue.connection, queue)
    job = queued_job(queue.connection, f"forte:trn_forged:ready:{body_digest(forged)}")
    assert job.is_failed
    assert "Forte has no transaction trn_forged" in job.meta["failure"]["reason"]
    assert sandbox_state.tokens == {}
    assert forte_state.lookups >= 2  # looked up again before giving up


def test_refused_credentials_fail_at_once_naming_the_variables(
    settings: Settings, sandbox_state: SandboxState, forte_state: ForteState, queue: Queue
) -> None:
    wrong = with_section(settings, ForteSettings, api_secure_key="not-the-secure-key")
    body = sale(forte_state, "trn_c1")
    deliver(wrong, "forte", body)
    run_burst_worker(wrong, queue.connection, queue)
    job = queued_job(queue.connection, f"forte:trn_c1:ready:{body_digest(body)}")
    reason = job.meta["failure"]["reason"]
    assert "refused our credentials (401)" in reason
    assert "FORTE_API_SECURE_KEY" in reason
    assert "not-the-secure-key" not in reason
    assert job.meta["failure"]["attempt"] == 1
    assert sandbox_state.tokens == {}


def test_an_answer_about_another_transaction_is_not_trusted(
    settings: Settings, sandbox_state: SandboxState, forte_state: ForteState, queue: Queue
) -> None:
    body = sale(forte_state, "trn_d1")
    forte_state.transactions["trn_d1"]["transaction_id"] = "trn_other"
    deliver(settings, "forte", body)
    run_burst_worker(settings, queue.connection, queue)
    job = queued_job(queue.connection, f"forte:trn_d1:ready:{body_digest(body)}")
    assert "another transaction" in job.meta["failure"]["reason"]
    assert sandbox_state.tokens == {}


def test_send_test_sample_is_paid_through_the_stand_in(
    settings: Settings, sandbox_state: SandboxState, forte_state: ForteState, run_worker: RunWorker
) -> None:
    webhook = samples.webhook(amount=Decimal("100.00"), order_number="43")
    transaction_id = webhook["transaction"]["transaction_id"]
    forte_state.transactions[transaction_id] = transaction_record(
        transaction_id, order_number="43", amount="100.00"
    )
    deliver(settings, "forte", webhook)
    run_worker()
    assert sandbox_state.invoices[43]["PaidOn"] is not None
    assert LOCATION_ID == webhook["location_id"]


@pytest.mark.parametrize(
    "tokens",
    ["short", "has/slash-and-is-long-enough-to-pass", "a" * 129, "a" * 32, "0123456789" * 3],
)
def test_a_weak_or_unsafe_token_stops_start_up_without_echoing_it(tokens: str) -> None:
    with pytest.raises(ConfigError, match="FORTE_WEBHOOK_TOKENS takes random tokens") as raised:
        Settings.from_env({"FORTE_WEBHOOK_TOKENS": tokens})
    assert tokens not in str(raised.value)


def test_a_forgery_sent_first_cannot_make_fortes_own_webhook_a_duplicate(
    settings: Settings,
    sandbox_state: SandboxState,
    forte_state: ForteState,
    run_worker: RunWorker,
) -> None:
    # Someone who knows the URL (and a genuine transaction id) posts first, naming a
    # location where Forte has no such transaction: that event fails; Forte's own webhook
    # of the same sale is another event, and pays the invoice.
    genuine = sale(forte_state, "trn_e1")
    forged = json.dumps(samples.webhook("trn_e1", location_id="loc_999")).encode()
    deliver(settings, "forte", forged, genuine)
    run_worker()
    assert sandbox_state.invoices[42]["PaidOn"] is not None
    assert [t["Token"] for t in sandbox_state.tokens.values()] == ["trn_e1"]


@pytest.mark.parametrize(
    "recorded", ["0001-01-01T00:00:00", "0001-01-01T00:00:00+01:00", "2999-01-01"]
)
def test_a_date_forte_could_not_mean_is_not_the_paid_date(
    settings: Settings,
    sandbox_state: SandboxState,
    forte_state: ForteState,
    run_worker: RunWorker,
    recorded: str,
) -> None:
    # .NET's "no date" (year 1) or a date far ahead: the webhook's date stands instead.
    body = sale(forte_state, "trn_h1")
    forte_state.transactions["trn_h1"]["received_date"] = recorded
    deliver(settings, "forte", body)
    run_worker()
    assert sandbox_state.invoices[42]["PaidOn"].startswith("2026-12-01T16:12:10")


@pytest.mark.parametrize(
    ("shape", "status", "paid"),
    [
        ({"card": None, "echeck": None}, "ready", None),  # neither: cannot tell, nothing
        ({"echeck": None}, "ready", None),  # a null eCheck is no eCheck, and no card either
        ({"card": {}, "echeck": {}}, "ready", None),
        ({"card": None, "echeck": None}, "settled", True),  # only a card settles
        ({"card": None, "echeck": None}, "funded", True),  # only an eCheck is funded
    ],
)
def test_card_or_echeck_is_read_from_the_record_and_doubt_records_nothing(
    settings: Settings,
    sandbox_state: SandboxState,
    forte_state: ForteState,
    queue: Queue,
    shape: dict[str, Any],
    status: str,
    paid: bool | None,
) -> None:
    body = sale(forte_state, "trn_f1", status=status)
    record = forte_state.transactions["trn_f1"]
    record.pop("card", None)
    record.update(shape)
    deliver(settings, "forte", body)
    run_burst_worker(settings, queue.connection, queue)
    if paid:
        assert sandbox_state.invoices[42]["PaidOn"] is not None
    else:
        job = queued_job(queue.connection, f"forte:trn_f1:ready:{body_digest(body)}")
        assert "cannot read for a payment neither card nor eCheck" in job.meta["failure"]["reason"]
        assert sandbox_state.tokens == {}


async def test_a_status_in_capitals_is_read_as_forte_writes_it_elsewhere(
    client: TestClient, queue: Queue
) -> None:
    body = json.dumps(samples.webhook("trn_g1", status="Ready")).encode()
    status, answer = await post_webhook(client, f"forte/{TOKEN}", body, JSON)
    assert (status, answer["status"]) == (200, "accepted")
    assert queue.count == 1
