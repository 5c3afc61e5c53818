"""Authorize.Net: the public signed example, and confirmation through the API."""

from __future__ import annotations

import pytest
from aiohttp.test_utils import TestClient
from rq import Queue

from payhooks.devtools.sandbox.nexudus import SandboxState
from payhooks.providers.authorizenet import sample as samples
from payhooks.providers.authorizenet.receiver import AuthorizeNetWebhook
from payhooks.providers.authorizenet.settings import AuthorizeNetSettings
from payhooks.providers.authorizenet.stand_in import AuthorizeNetState, transaction_record
from payhooks.providers.kit.receiver_errors import InvalidSignature
from payhooks.settings import Settings
from tests.support.client import post_webhook
from tests.support.delivery import deliver, queued_job
from tests.support.processes import RunWorker
from tests.support.settings import AUTHORIZENET_KEY

# The signed example in stymiee/authnetjson's tests (AuthnetWebhookTest): this key, body
# and header verify.
VECTOR_KEY = (
    "52CB4A002C634B84E397DC8A218E1A160BA7CAB7CBE4C05B35E9CBB05E14FE4A2385812E980CCF97D177F1"
    "7863CE214D1BE6CE8E1E894487AACF3609C1A5FE17"
)
VECTOR_BODY = (
    b'{"notificationId":"182cbbff-cab2-4080-931d-80e5d818f23a","eventType":"net.authorize.'
    b'payment.authcapture.created","eventDate":"2017-08-18T20:40:52.7722007Z","webhookId":'
    b'"849eb87e-078a-4169-a34b-c0bded5019a8","payload":{"responseCode":0,"authCode":"Z3PV5H",'
    b'"avsResponse":"Y","authAmount":0.0,"entityName":"transaction","id":"40005915599"}}'
)
VECTOR_SIGNATURE = (
    "sha512=A1E0CC0F8A7B6274E0951CAC5EB63579F70FC6B7B15384B146DCE02B98DEE3954A5A8E331661B51DE9"
    "53E141E88994DFA7D267FFB8428BE0660511B6EFB94960"
)


def test_published_example_verifies_case_insensitively() -> None:
    provider = AuthorizeNetWebhook(AuthorizeNetSettings(signature_keys=(VECTOR_KEY,)))
    provider.verify(VECTOR_BODY, {"X-ANET-Signature": VECTOR_SIGNATURE})
    provider.verify(VECTOR_BODY, {"X-ANET-Signature": VECTOR_SIGNATURE.lower()})
    wrong = VECTOR_SIGNATURE[:-1] + "1"  # one digit off
    with pytest.raises(InvalidSignature):
        provider.verify(VECTOR_BODY, {"X-ANET-Signature": wrong})
    [event] = provider.normalise(VECTOR_BODY, {})
    assert (event.event_id, event.token) == ("182cbbff-cab2-4080-931d-80e5d818f23a", "40005915599")


@pytest.mark.parametrize("header", [None, "sha512=00", "md5=abc"])
async def test_bad_signature_is_400(client: TestClient, queue: Queue, header: str | None) -> None:
    body, headers = samples.signed(samples.notification(), AUTHORIZENET_KEY)
    if header is None:
        del headers["X-ANET-Signature"]
    else:
        headers["X-ANET-Signature"] = header
    status, answer = await post_webhook(client, "authorizenet", body, headers)
    assert (status, answer["error"]) == (400, "invalid_signature")
    assert queue.count == 0


async def test_signed_notification_is_queued_once(client: TestClient, queue: Queue) -> None:
    body, headers = samples.signed(samples.notification(), AUTHORIZENET_KEY)
    for expected in ("accepted", "duplicate"):
        _, answer = await post_webhook(client, "authorizenet", body, headers)
        assert answer["status"] == expected
    assert queue.count == 1


def test_confirmed_transaction_marks_the_invoice_paid(
    settings: Settings,
    sandbox_state: SandboxState,
    authorizenet_state: AuthorizeNetState,
    run_worker: RunWorker,
) -> None:
    sandbox_state.invoices[42]["CurrencyCode"] = "USD"
    authorizenet_state.transactions["6001"] = transaction_record(
        "6001", invoice_number="42", amount="100.00", subscription_id="SUB9"
    )
    deliver(
        settings, "authorizenet", samples.signed(samples.notification("6001"), AUTHORIZENET_KEY)
    )
    run_worker()
    [token] = sandbox_state.tokens.values()
    assert (token["Token"], token["RegularPaymentProvider"]) == ("6001", 4)
    assert "subscription SUB9" in token["Notes"]
    assert sandbox_state.invoices[42]["PaidOn"] is not None
    assert authorizenet_state.lookups == 1


@pytest.mark.parametrize(
    ("transaction", "reason"),
    [
        (None, "has no transaction 6002"),
        ("declined", "is declined, not captured"),
    ],
)
def test_unconfirmed_transaction_records_no_money(
    settings: Settings,
    sandbox_state: SandboxState,
    authorizenet_state: AuthorizeNetState,
    run_worker: RunWorker,
    queue: Queue,
    transaction: str | None,
    reason: str,
) -> None:
    if transaction is not None:
        authorizenet_state.transactions["6002"] = transaction_record(
            "6002", invoice_number="42", amount="100.00", status=transaction
        )
    notification = samples.notification("6002")
    deliver(settings, "authorizenet", samples.signed(notification, AUTHORIZENET_KEY))
    run_worker()
    assert sandbox_state.calls == []
    job = queued_job(queue.connection, f"authorizenet:{notification['notificationId']}")
    assert reason in job.meta["failure"]["reason"]
    assert job.meta["failure"]["attempt"] == 1


def _payment_and_refund(state: AuthorizeNetState, refunded: str) -> None:
    """Payment 6003 (100.00 for invoice 42) and refund 6004 of ``refunded`` of it."""
    state.transactions["6003"] = transaction_record("6003", invoice_number="42", amount="100.00")
    state.transactions["6004"] = transaction_record(
        "6004",
        invoice_number="42",
        amount=refunded,
        status="refundPendingSettlement",
        refunds="6003",
    )


def test_a_refund_seen_first_stops_its_payment(
    settings: Settings,
    sandbox_state: SandboxState,
    authorizenet_state: AuthorizeNetState,
    run_worker: RunWorker,
    queue: Queue,
) -> None:
    # refund.created names the refund (6004), not the payment: read as it came, it took
    # back nothing of payment 6003, which was then recorded and marked paid.
    _payment_and_refund(authorizenet_state, refunded="100.00")
    refund = samples.notification("6004", event="refund.created")
    deliver(settings, "authorizenet", samples.signed(refund, AUTHORIZENET_KEY))
    run_worker()
    assert sandbox_state.calls == []  # nothing of the payment was applied yet
    deliver(
        settings, "authorizenet", samples.signed(samples.notification("6003"), AUTHORIZENET_KEY)
    )
    run_worker()
    assert len(queue.failed_job_registry) == 0
    assert sandbox_state.tokens == {}
    assert sandbox_state.invoices[42]["PaidOn"] is None


def test_a_partial_refund_takes_back_only_its_amount(
    settings: Settings,
    sandbox_state: SandboxState,
    authorizenet_state: AuthorizeNetState,
    run_worker: RunWorker,
) -> None:
    # 30.00 of 100.00 went back before the payment was applied: 70.00 counts, so the
    # invoice stays open (a refund without its amount would take back all of it).
    sandbox_state.invoices[42]["CurrencyCode"] = "USD"  # AUTHORIZENET_CURRENCY's
    _payment_and_refund(authorizenet_state, refunded="30.00")
    refund = samples.notification("6004", event="refund.created")
    deliver(settings, "authorizenet", samples.signed(refund, AUTHORIZENET_KEY))
    deliver(
        settings, "authorizenet", samples.signed(samples.notification("6003"), AUTHORIZENET_KEY)
    )
    run_worker()
    [token] = sandbox_state.tokens.values()
    assert token["Token"] == "6003"
    assert "USD went back (6004)" in token["Notes"]
    assert "70.00 of 100.00 USD" in token["Notes"]
    assert sandbox_state.invoices[42]["PaidOn"] is None


def test_a_refund_naming_no_payment_fails_for_a_person(
    settings: Settings,
    sandbox_state: SandboxState,
    authorizenet_state: AuthorizeNetState,
    run_worker: RunWorker,
    queue: Queue,
) -> None:
    authorizenet_state.transactions["6005"] = transaction_record(
        "6005", invoice_number="42", amount="100.00"
    )  # a sale, not a refund
    refund = samples.notification("6005", event="refund.created")
    deliver(settings, "authorizenet", samples.signed(refund, AUTHORIZENET_KEY))
    run_worker()
    assert sandbox_state.calls == []
    job = queued_job(queue.connection, f"authorizenet:{refund['notificationId']}")
    assert job.get_status() == "failed"
    assert "names no payment (refTransId)" in job.meta["failure"]["reason"]


def test_fraud_approved_is_paid_once_confirmed() -> None:
    provider = AuthorizeNetWebhook(AuthorizeNetSettings(signature_keys=(AUTHORIZENET_KEY,)))
    body = samples.signed(samples.notification("7001", event="fraud.approved"), AUTHORIZENET_KEY)[0]
    [event] = provider.normalise(body, {})
    assert event.kind.value == "paid"
