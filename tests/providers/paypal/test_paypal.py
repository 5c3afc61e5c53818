"""PayPal: REST webhooks verified offline against a certificate chain; IPN confirmed by
posting it back. The certificate host and the IPN postback are local stand-ins."""

from __future__ import annotations

import dataclasses
import json
from decimal import Decimal
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from redis import Redis
from rq import Queue
from rq.job import Job

from payhooks.devtools.sandbox.nexudus import SandboxState
from payhooks.devtools.sandbox.server import ThreadedServer
from payhooks.domain.events import Ignored, PaymentEvent, PaymentKind
from payhooks.providers.kit.receiver_errors import MalformedPayload
from payhooks.providers.paypal import sample as samples
from payhooks.providers.paypal.settings import PayPalIpnSettings, PayPalSettings
from payhooks.providers.paypal.stand_in import CERT_PATH, PayPalState
from payhooks.providers.receivers import build_providers
from payhooks.settings import Settings
from service.app import create_app
from service.inbox import Accepted
from tests.support.client import MakeClient, post_webhook
from tests.support.delivery import deliver, finished, queued_job
from tests.support.processes import RunWorker
from tests.support.provider_payloads import PAYPAL_SAMPLES
from tests.support.settings import PAYPAL_WEBHOOK_ID, with_section

FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def webhook(
    sandbox: ThreadedServer,
    paypal_state: PayPalState,
    event: dict[str, Any],
    webhook_id: str = PAYPAL_WEBHOOK_ID,
) -> tuple[bytes, dict[str, str]]:
    body = samples.encoded(event)
    return body, samples.headers_for(body, webhook_id, sandbox.url + CERT_PATH, paypal_state.sign)


class TestWebhooks:
    async def test_signed_capture_is_queued_once(
        self, client: TestClient, queue: Queue, sandbox: ThreadedServer, paypal_state: PayPalState
    ) -> None:
        body, headers = webhook(
            sandbox, paypal_state, samples.capture_event(invoice_id="42", amount=Decimal(100))
        )
        for expected in ("accepted", "duplicate"):
            _, answer = await post_webhook(client, "paypal", body, headers)
            assert answer["status"] == expected
        assert queue.count == 1

    @pytest.mark.parametrize(
        "tamper", ["body", "webhook id", "signature", "cert host", "algorithm", "no cert url"]
    )
    async def test_forgeries_are_400(
        self,
        client: TestClient,
        queue: Queue,
        sandbox: ThreadedServer,
        paypal_state: PayPalState,
        tamper: str,
    ) -> None:
        event = samples.capture_event(invoice_id="42", amount=Decimal(100))
        body, headers = webhook(
            sandbox,
            paypal_state,
            event,
            webhook_id="WH-SOMEONE-ELSE" if tamper == "webhook id" else PAYPAL_WEBHOOK_ID,
        )
        if tamper == "body":
            body = body.replace(b"100.00", b"1.00")
        elif tamper == "signature":
            headers["PAYPAL-TRANSMISSION-SIG"] = paypal_state.sign(b"something else")
        elif tamper == "cert host":
            headers["PAYPAL-CERT-URL"] = "https://evil.example/paypal/certs/x.pem"
        elif tamper == "algorithm":
            headers["PAYPAL-AUTH-ALGO"] = "SHA1withRSA"
        elif tamper == "no cert url":
            del headers["PAYPAL-CERT-URL"]
        status, answer = await post_webhook(client, "paypal", body, headers)
        assert (status, answer["error"]) == (400, "invalid_signature")
        assert queue.count == 0

    async def test_certificate_from_an_untrusted_chain_is_refused(
        self,
        aiohttp_client: Any,
        settings: Settings,
        redis: Redis,
        queue: Queue,
        sandbox: ThreadedServer,
        paypal_state: PayPalState,
        tmp_path: Any,
    ) -> None:
        other = PayPalState()  # another CA: trusted by nobody here
        untrusted = tmp_path / "other-ca.pem"
        untrusted.write_bytes(other.ca_pem)
        client = await aiohttp_client(
            create_app(with_section(settings, PayPalSettings, cert_trust_file=str(untrusted)))
        )
        body, headers = webhook(
            sandbox, paypal_state, samples.capture_event(invoice_id="42", amount=Decimal(1))
        )
        _, answer = await post_webhook(client, "paypal", body, headers)
        assert answer["reason"] == "PayPal's certificate chain ends in an untrusted root"
        assert queue.count == 0

    async def test_expired_certificate_is_refused(
        self,
        aiohttp_client: Any,
        settings: Settings,
        redis: Redis,
        tmp_path: Any,
    ) -> None:

        from payhooks.providers.paypal.stand_in import add_paypal_routes

        expired = PayPalState(leaf_days=-2)  # its leaf lapsed yesterday
        server = ThreadedServer(lambda: _app_with(add_paypal_routes, expired)).start()
        trust = tmp_path / "ca.pem"
        trust.write_bytes(expired.ca_pem)
        try:
            client = await aiohttp_client(
                create_app(
                    with_section(
                        settings,
                        PayPalSettings,
                        cert_trust_file=str(trust),
                        cert_url_prefixes=(f"{server.url}/paypal/",),
                    )
                )
            )
            body = samples.encoded(samples.capture_event(invoice_id="42", amount=Decimal(1)))
            headers = samples.headers_for(
                body, PAYPAL_WEBHOOK_ID, server.url + CERT_PATH, expired.sign
            )
            _, answer = await post_webhook(client, "paypal", body, headers)
            assert answer["reason"] == "PayPal's certificate chain has an expired certificate"
        finally:
            server.stop()

    async def test_unreachable_certificate_host_is_503_so_paypal_retries(
        self,
        aiohttp_client: Any,
        settings: Settings,
        redis: Redis,
    ) -> None:
        from payhooks.devtools.embedded_redis import free_port

        prefix = f"http://127.0.0.1:{free_port()}/paypal/"
        client = await aiohttp_client(
            create_app(with_section(settings, PayPalSettings, cert_url_prefixes=(prefix,)))
        )
        body = samples.encoded(samples.capture_event(invoice_id="42", amount=Decimal(1)))
        headers = samples.headers_for(
            body, PAYPAL_WEBHOOK_ID, prefix + "certs/x.pem", lambda m: "AAAA"
        )
        status, _ = await post_webhook(client, "paypal", body, headers)
        assert status == 503


def _app_with(add_routes: Any, state: PayPalState) -> Any:
    from aiohttp import web

    app = web.Application()
    add_routes(app, state)
    return app


@pytest.mark.parametrize(
    ("event_type", "kind"),
    [
        ("PAYMENT.CAPTURE.COMPLETED", PaymentKind.PAID),
        ("PAYMENT.CAPTURE.PENDING", PaymentKind.PENDING),
        ("PAYMENT.CAPTURE.DENIED", PaymentKind.FAILED),
        ("PAYMENT.SALE.COMPLETED", PaymentKind.PAID),
        ("PAYMENT.SALE.DENIED", PaymentKind.FAILED),
    ],  # refunds and reversals: TestRestRefunds, with PayPal's own bodies
)
def test_event_types_and_provider_value(
    settings: Settings, event_type: str, kind: PaymentKind
) -> None:
    provider = build_providers(settings)["paypal"]
    if ".SALE." in event_type:
        event = {
            "id": "WH-1",
            "event_type": event_type,
            "resource": {
                "id": "SALE1",
                "amount": {"total": "100.00", "currency": "EUR"},
                "invoice_number": "42",
                "billing_agreement_id": "I-SUB",
                "create_time": "2026-11-20T10:00:00Z",
            },
        }
        value = 5
    else:
        event = samples.capture_event(invoice_id="42", amount=Decimal(100))
        event["event_type"] = event_type
        value = 6
    [result] = provider.normalise(json.dumps(event).encode(), {})
    assert isinstance(result, PaymentEvent)
    assert (result.kind, result.invoice.invoice_id, result.amount) == (kind, 42, Decimal("100.00"))
    assert result.regular_payment_provider == value


def test_verified_capture_marks_the_invoice_paid(
    settings: Settings, sandbox_state: SandboxState, run_worker: RunWorker
) -> None:
    event = samples.capture_event(invoice_id="42", amount=Decimal(100))
    deliver(settings, "paypal", event)
    run_worker()
    [token] = sandbox_state.tokens.values()
    assert (token["Token"], token["RegularPaymentProvider"]) == (event["resource"]["id"], 6)
    assert sandbox_state.invoices[42]["PaidOn"] is not None


class TestIpn:
    async def test_acknowledged_at_once(self, client: TestClient, queue: Queue) -> None:
        status, _ = await post_webhook(
            client, "paypal-ipn", samples.ipn(invoice="42", amount=Decimal(100)), FORM
        )
        assert status == 200
        assert queue.count == 1

    async def test_with_a_url_token_only_the_url_ending_with_it_exists(
        self, make_client: MakeClient, settings: Settings, queue: Queue
    ) -> None:
        token = "ipn-url-token-of-ours-0123456789"
        client = await make_client(with_section(settings, PayPalIpnSettings, url_tokens=(token,)))
        body = samples.ipn(invoice="42", amount=Decimal(100))
        for path in ("paypal-ipn", "paypal-ipn/ipn-url-token-but-not-the-one-we-set"):
            response = await client.post(f"/webhooks/{path}", data=body, headers=FORM)
            assert response.status in (404, 405), path
        assert queue.count == 0
        status, answer = await post_webhook(client, f"paypal-ipn/{token}", body, FORM)
        assert (status, answer["status"]) == (200, "accepted")
        assert queue.count == 1

    def test_verified_ipn_marks_the_invoice_paid(
        self,
        settings: Settings,
        sandbox_state: SandboxState,
        paypal_state: PayPalState,
        run_worker: RunWorker,
    ) -> None:
        body = samples.ipn(invoice="42", amount=Decimal(100), txn_id="TXN42")
        deliver(settings, "paypal-ipn", body)
        run_worker()
        [token] = sandbox_state.tokens.values()
        assert (token["Token"], token["RegularPaymentProvider"]) == ("TXN42", 5)
        assert "subscription I-PAYHOOKS0001" in token["Notes"]
        assert sandbox_state.invoices[42]["PaidOn"] == "2026-11-20T18:14:20Z"
        assert paypal_state.postbacks == [b"cmd=_notify-validate&" + body]  # byte for byte

    @pytest.mark.parametrize("problem", ["INVALID", "another receiver"])
    def test_unconfirmed_ipn_records_no_money(
        self,
        settings: Settings,
        sandbox_state: SandboxState,
        paypal_state: PayPalState,
        run_worker: RunWorker,
        queue: Queue,
        problem: str,
    ) -> None:
        if problem == "INVALID":
            paypal_state.invalid_txns.add("TXN43")
            body = samples.ipn(invoice="43", amount=Decimal(100), txn_id="TXN43")
        else:
            body = samples.ipn(
                invoice="43",
                amount=Decimal(100),
                txn_id="TXN43",
                receiver_email="someone@else.example",
            )
        deliver(settings, "paypal-ipn", body)
        run_worker()
        assert sandbox_state.calls == []
        job = ipn_job(settings, body, queue)
        assert job.meta["failure"]["error_class"] == "ProviderLookupError"
        assert job.meta["failure"]["attempt"] == 1


def test_a_leaf_cannot_vouch_for_another_certificate(
    paypal_keys: PayPalState, tmp_path: Any
) -> None:
    """A certificate signed by a non-CA leaf (which chains to a trusted root) is refused."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa as rsa_keys

    from payhooks.providers.kit.receiver_errors import InvalidSignature
    from payhooks.providers.paypal.receiver import PayPalWebhook
    from payhooks.providers.paypal.stand_in import _certificate

    trust = tmp_path / "ca.pem"
    trust.write_bytes(paypal_keys.ca_pem)
    forger_key = rsa_keys.generate_private_key(public_exponent=65537, key_size=2048)
    forged = _certificate(
        "messageverificationcerts.paypal.com",
        forger_key,
        "messageverificationcerts.sandbox.paypal.com",
        paypal_keys.leaf_key,
        ca=False,
        days=30,
    )
    pem = forged.public_bytes(serialization.Encoding.PEM) + paypal_keys.chain_pem
    provider = PayPalWebhook(
        ("WH-1",),
        cert_url_prefixes=("https://api.paypal.com/",),
        trust_file=str(trust),
        provider_value=None,
    )
    with pytest.raises(InvalidSignature, match="non-CA issuer"):
        provider._checked_leaf(pem)
    assert provider._checked_leaf(paypal_keys.chain_pem) == paypal_keys.leaf


async def test_certificate_url_with_a_query_is_refused_without_fetching(
    client: TestClient,
    sandbox: ThreadedServer,
    paypal_state: PayPalState,
    sandbox_state: SandboxState,
) -> None:
    body, headers = webhook(
        sandbox, paypal_state, samples.capture_event(invoice_id="42", amount=Decimal(1))
    )
    headers["PAYPAL-CERT-URL"] += "?x=1"
    status, answer = await post_webhook(client, "paypal", body, headers)
    assert (status, answer["error"]) == (400, "invalid_signature")


def ipn_job(settings: Settings, body: bytes, queue: Queue) -> Job:
    [event] = build_providers(settings)["paypal-ipn"].normalise(body, {})
    assert isinstance(event, PaymentEvent)
    return queued_job(queue.connection, event.key)


@dataclasses.dataclass
class IpnWorld:
    """The receiver's queue, PayPal's postback stand-in, Nexudus's sandbox, real workers."""

    settings: Settings
    nexudus: SandboxState
    paypal: PayPalState
    run_worker: RunWorker
    queue: Queue

    def job(self, body: bytes) -> Job:
        return ipn_job(self.settings, body, self.queue)

    def outcome(self, body: bytes) -> str:
        """How the IPN's job finished (RQ deletes a finished job; its trail says)."""
        [event] = build_providers(self.settings)["paypal-ipn"].normalise(body, {})
        assert isinstance(event, PaymentEvent)
        return finished(self.queue.connection, event.key)


@pytest.fixture
def world(
    settings: Settings,
    sandbox_state: SandboxState,
    paypal_state: PayPalState,
    run_worker: RunWorker,
    queue: Queue,
) -> IpnWorld:
    return IpnWorld(settings, sandbox_state, paypal_state, run_worker, queue)


class TestForgedIpn:
    """Only the body PayPal sent is VERIFIED by the postback (``paypal.genuine``)."""

    def test_a_forgery_cannot_borrow_a_genuine_ones_confirmation(self, world: IpnWorld) -> None:
        # A genuine 0.01 IPN without an invoice (ignored), then a forgery with the same
        # txn_id and status naming invoice 43.
        genuine = samples.ipn(invoice="", amount=Decimal("0.01"), txn_id="TXNX")
        forged = samples.ipn(invoice="43", amount=Decimal("100.00"), txn_id="TXNX")
        world.paypal.genuine.add(genuine)
        deliver(world.settings, "paypal-ipn", genuine, forged)
        world.run_worker()
        assert world.nexudus.calls == []
        assert world.nexudus.invoices[43]["PaidOn"] is None
        assert world.paypal.postbacks == [b"cmd=_notify-validate&" + forged]
        assert "did not confirm" in world.job(forged).meta["failure"]["reason"]

    def test_a_forgery_first_neither_blocks_nor_delays_the_genuine_one(
        self, world: IpnWorld
    ) -> None:
        # A forger who learnt a genuine payment's txn_id posts first, with the same txn_id,
        # status, invoice and amount.
        forged = samples.ipn(invoice="43", amount=Decimal("100.00"), txn_id="TXNG")
        genuine = samples.ipn(invoice="43", amount=Decimal("100.00"), txn_id="TXNG")
        resent = genuine + b"&resend=true"  # PayPal's resend from the IPN history: a new body
        world.paypal.genuine.update({genuine, resent})

        accepted = deliver(world.settings, "paypal-ipn", forged, genuine, genuine, resent)
        assert accepted == [Accepted.QUEUED, Accepted.QUEUED, Accepted.DUPLICATE, Accepted.QUEUED]
        world.run_worker()

        assert world.nexudus.invoices[43]["PaidOn"] == "2026-11-20T18:14:20Z"
        [token] = world.nexudus.tokens.values()
        assert (token["Token"], token["CoworkerInvoiceId"]) == ("TXNG", 43)
        failure = world.job(forged).meta["failure"]
        assert (failure["error_class"], failure["attempt"]) == ("ProviderLookupError", 1)
        assert "did not confirm" in failure["reason"]
        assert world.outcome(genuine) == "applied"
        assert world.outcome(resent) == "already_applied"


class TestWebhookAndIpnTogether:
    def test_a_capture_announced_by_both_is_one_payment(self, world: IpnWorld) -> None:
        # An account with both REST webhooks and IPN on: PayPal announces one capture
        # twice, under the same transaction id. One payment, one token, no false alarm.
        capture = samples.capture_event(invoice_id="43", amount=Decimal("100.00"))
        txn_id = capture["resource"]["id"]
        ipn = samples.ipn(invoice="43", amount=Decimal("100.00"), txn_id=txn_id)
        world.paypal.genuine.add(ipn)
        deliver(world.settings, "paypal", capture)
        deliver(world.settings, "paypal-ipn", ipn)
        world.run_worker()
        [token] = world.nexudus.tokens.values()
        assert (token["Token"], token["CoworkerInvoiceId"]) == (txn_id, 43)
        assert world.nexudus.invoices[43]["PaidOn"] is not None
        assert world.outcome(ipn) == "already_applied"


class TestIpnRefunds:
    """Refunds and reversals name their payment in ``parent_txn_id``, with a negative
    ``mc_gross`` (PayPal's IPN variables reference,
    developer.paypal.com/api/nvp-soap/ipn/IPNandPDTVariables/)."""

    @pytest.mark.parametrize("status", ["Refunded", "Reversed"])
    def test_refund_names_the_payment_with_a_positive_amount(
        self, settings: Settings, status: str
    ) -> None:
        provider = build_providers(settings)["paypal-ipn"]
        paid = samples.ipn(invoice="42", amount=Decimal("100.00"), txn_id="PAYTXN")
        refund = samples.ipn(
            invoice="42",
            amount=Decimal("-100.00"),
            status=status,
            txn_id="REFUNDTXN",
            parent_txn_id="PAYTXN",
        )
        [payment] = provider.normalise(paid, {})
        [undo] = provider.normalise(refund, {})
        assert isinstance(payment, PaymentEvent)
        assert isinstance(undo, PaymentEvent)
        assert (undo.kind, undo.token, undo.amount) == (
            PaymentKind.REFUNDED,
            payment.token,
            Decimal("100.00"),
        )

    def test_completed_with_a_negative_gross_is_not_a_payment(self, settings: Settings) -> None:
        provider = build_providers(settings)["paypal-ipn"]
        body = samples.ipn(invoice="42", amount=Decimal("-100.00"), txn_id="SENT1")
        [result] = provider.normalise(body, {})
        assert isinstance(result, Ignored)
        assert "negative mc_gross" in result.reason

    def test_forged_refund_is_confirmed_before_it_counts(self, world: IpnWorld) -> None:
        world.paypal.invalid_txns.add("FAKEREFUND")
        body = samples.ipn(
            invoice="42",
            amount=Decimal("-100.00"),
            status="Refunded",
            txn_id="FAKEREFUND",
            parent_txn_id="PAYTXN",
        )
        deliver(world.settings, "paypal-ipn", body)
        world.run_worker()
        assert world.paypal.postbacks == [b"cmd=_notify-validate&" + body]
        assert "did not confirm" in world.job(body).meta["failure"]["reason"]


class TestRestRefunds:
    """Refunds and reversals carry the token of the payment they undo, and what left as a
    positive amount. Bodies: tests/fixtures/paypal/README.md says where each comes from."""

    @pytest.mark.parametrize(
        ("fixture", "token", "amount"),
        [
            # v2: the resource is the refund; its `up` link is the refunded capture.
            ("capture_refunded.json", "0JF852973C016714D", Decimal("0.99")),
            ("capture_reversed.json", "4L335234718889942", Decimal("2.51")),
            # v1: `sale_id`, and the total arrives negative.
            ("sale_refunded.json", "9T0916710M1105906", Decimal("0.01")),
        ],
    )
    def test_published_refund_names_its_payment(
        self, settings: Settings, fixture: str, token: str, amount: Decimal
    ) -> None:
        provider = build_providers(settings)["paypal"]
        [refund] = provider.normalise((PAYPAL_SAMPLES / fixture).read_bytes(), {})
        assert isinstance(refund, PaymentEvent)
        assert (refund.kind, refund.token, refund.amount, refund.currency) == (
            PaymentKind.REFUNDED,
            token,
            amount,
            "USD",
        )

    def test_capture_and_its_refund_share_the_token(self, settings: Settings) -> None:
        provider = build_providers(settings)["paypal"]
        paid = samples.capture_event(invoice_id="42", amount=Decimal("0.99"), currency="USD")
        paid["resource"]["id"] = "0JF852973C016714D"  # the capture the published refund names
        [payment] = provider.normalise(samples.encoded(paid), {})
        [refund] = provider.normalise((PAYPAL_SAMPLES / "capture_refunded.json").read_bytes(), {})
        assert isinstance(payment, PaymentEvent)
        assert isinstance(refund, PaymentEvent)
        assert refund.token == payment.token

    def test_reversal_naming_no_sale_is_not_misfiled(self, settings: Settings) -> None:
        # PayPal's simulator sends this reversal without sale_id: its only id is the
        # refund's own, which no payment token could ever match. Money left: it is kept as
        # unprocessed (tests/receiver/test_money_moved_is_never_dropped.py), not misfiled.
        provider = build_providers(settings)["paypal"]
        with pytest.raises(MalformedPayload, match="names no capture or sale"):
            provider.normalise((PAYPAL_SAMPLES / "sale_reversed.json").read_bytes(), {})


def test_an_ipn_queued_under_the_old_event_id_is_still_confirmed_and_applied(
    world: IpnWorld,
) -> None:
    """Jobs queued before event ids named their body (``txn_id-status``) survive the upgrade."""
    from payhooks.devtools.samples.deliver import queue_events
    from payhooks.storage.trail import StoredWebhook

    body = samples.ipn(invoice="44", amount=Decimal("100.00"), txn_id="TXNOLD")
    [event] = build_providers(world.settings)["paypal-ipn"].normalise(body, {})
    assert isinstance(event, PaymentEvent)
    old = event.with_changes(event_id="TXNOLD-Completed")
    # Queued as the old receiver did: under the old event id.
    queue_events(world.settings, [(StoredWebhook.of("paypal-ipn", body, {}, None), [old])])
    world.run_worker()
    assert world.nexudus.invoices[44]["PaidOn"] is not None
    assert world.paypal.postbacks == [b"cmd=_notify-validate&" + body]


@pytest.mark.parametrize("gross", ["NaN", "-Infinity", "sNaN"])
def test_an_ipn_gross_that_is_no_number_is_an_unknown_amount(
    settings: Settings, gross: str
) -> None:
    # Decimal parses these, and NaN cannot be compared with 0: refunds and negative checks
    # must not turn them into a crash (a 500 PayPal retries for days).
    body = samples.ipn(invoice="42", amount=Decimal(1), txn_id="ODD").replace(
        b"mc_gross=1.00", b"mc_gross=" + gross.encode()
    )
    # A paid IPN whose amount cannot be read is a body we cannot read: kept as unprocessed
    # (the receiver's answer to MalformedPayload), never a job bound to fail AmountMismatch.
    with pytest.raises(MalformedPayload, match="mc_gross"):
        build_providers(settings)["paypal-ipn"].normalise(body, {})


def test_a_refund_with_odd_links_or_amount_is_kept_not_dropped(settings: Settings) -> None:
    refund = json.loads((PAYPAL_SAMPLES / "capture_refunded.json").read_bytes())
    refund["resource"]["links"] = 7
    refund["resource"]["amount"] = {"currency_code": "USD", "value": "NaN"}
    with pytest.raises(MalformedPayload):
        build_providers(settings)["paypal"].normalise(json.dumps(refund).encode(), {})


def test_send_tests_ipn_is_dated_now_as_paypal_writes_it() -> None:
    from datetime import UTC, datetime
    from urllib.parse import parse_qs

    from payhooks.providers.kit.samples import SampleRequest
    from payhooks.providers.paypal.ipn_formats import ipn_events

    request = SampleRequest(
        invoice=47,
        amount=Decimal("100.00"),
        currency="EUR",
        method="card",
        source="bank",
        env={},
        sandbox_url="http://127.0.0.1:1",
    )
    sample = samples.ipn_for_send_test(request)
    assert parse_qs(sample.body.decode())["payment_date"][0].endswith(("PST", "PDT"))
    [event] = ipn_events(sample.body)
    assert isinstance(event, PaymentEvent)
    assert abs((event.occurred_at - datetime.now(tz=UTC)).total_seconds()) < 60
