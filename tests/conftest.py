"""Fixtures: a real redis-server, the Nexudus sandbox over HTTP, real RQ workers."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from pytest_aiohttp import AiohttpClient
from redis import Redis
from rq import Queue, SimpleWorker

from payhooks.devtools.embedded_redis import EmbeddedRedis
from payhooks.devtools.sandbox import add_stand_ins
from payhooks.devtools.sandbox.authorizenet import LOGIN_ID as ANET_LOGIN_ID
from payhooks.devtools.sandbox.authorizenet import TRANSACTION_KEY as ANET_TRANSACTION_KEY
from payhooks.devtools.sandbox.authorizenet import AuthorizeNetState
from payhooks.devtools.sandbox.epay import MERCHANT_NUMBER as EPAY_MERCHANT
from payhooks.devtools.sandbox.epay import EPayState
from payhooks.devtools.sandbox.gocardless import ACCESS_TOKEN, GoCardlessState
from payhooks.devtools.sandbox.nexudus import SandboxState, create_sandbox_app, invoice_record
from payhooks.devtools.sandbox.paypal import PayPalState
from payhooks.devtools.sandbox.server import ThreadedServer
from payhooks.devtools.sandbox.stripe import StripeState
from payhooks.domain.providers import stand_ins
from payhooks.settings import Settings
from service.app import create_app
from tests.support.client import MakeClient
from tests.support.settings import (
    AUTHORIZENET_KEY,
    BRAINTREE_PRIVATE,
    BRAINTREE_PUBLIC,
    EPAY_SECRET,
    GENERIC_SECRET,
    GOCARDLESS_SECRET,
    LIQPAY_KEY,
    OLD_GENERIC_SECRET,
    OLD_GOCARDLESS_SECRET,
    OLD_LIQPAY_KEY,
    OLD_STRIPE_SECRET,
    PAYPAL_RECEIVER,
    PAYPAL_WEBHOOK_ID,
    STRIPE_SECRET,
)
from workers import context


@pytest.fixture(scope="session")
def redis_server() -> Iterator[EmbeddedRedis]:
    with EmbeddedRedis() as server:
        yield server


@pytest.fixture
def redis(redis_server: EmbeddedRedis) -> Iterator[Redis]:
    client = Redis.from_url(redis_server.url)
    client.flushall()
    yield client
    client.flushall()
    client.close()


@pytest.fixture
def sandbox_state() -> SandboxState:
    state = SandboxState(writes_per_minute=10_000, calls_per_minute=10_000)
    for invoice_id in (42, 43, 44):
        state.invoices[invoice_id] = invoice_record(invoice_id)
    return state


@pytest.fixture
def gocardless_state() -> GoCardlessState:
    return GoCardlessState()


@pytest.fixture
def authorizenet_state() -> AuthorizeNetState:
    return AuthorizeNetState()


@pytest.fixture
def epay_state() -> EPayState:
    return EPayState()


@pytest.fixture
def stripe_state() -> StripeState:
    return StripeState()


@pytest.fixture(scope="session")
def paypal_keys() -> PayPalState:
    return PayPalState()  # RSA keys take a while to make: once per session


@pytest.fixture
def paypal_state(paypal_keys: PayPalState) -> PayPalState:
    paypal_keys.invalid_txns.clear()
    paypal_keys.genuine.clear()
    paypal_keys.postbacks.clear()
    return paypal_keys


@pytest.fixture(scope="session")
def paypal_trust_file(paypal_keys: PayPalState, tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("paypal") / "sandbox-ca.pem"
    path.write_bytes(paypal_keys.ca_pem)
    return str(path)


@pytest.fixture
def sandbox(
    request: pytest.FixtureRequest, sandbox_state: SandboxState
) -> Iterator[ThreadedServer]:
    """The Nexudus sandbox with every provider's stand-in from the registry.

    A test reads a stand-in's state through its ``<name>_state`` fixture (``gocardless_state``);
    a stand-in without one starts empty.
    """
    states: dict[str, object] = {}
    for name in stand_ins():
        try:
            states[name] = request.getfixturevalue(f"{name}_state")
        except pytest.FixtureLookupError:
            continue

    def make() -> web.Application:
        app = create_sandbox_app(sandbox_state)
        add_stand_ins(app, states)
        return app

    server = ThreadedServer(make).start()
    yield server
    server.stop()


@pytest.fixture
def settings(
    redis_server: EmbeddedRedis,
    sandbox: ThreadedServer,
    sandbox_state: SandboxState,
    paypal_trust_file: str,
) -> Settings:
    return Settings(
        redis_url=redis_server.url,
        nexudus_base_url=sandbox.url,
        nexudus_username=sandbox_state.username,
        nexudus_password=sandbox_state.password,
        nexudus_timeout_seconds=5,
        nexudus_writes_per_minute=10_000,
        nexudus_calls_per_minute=10_000,
        nexudus_min_interval_ms=0,
        stripe_webhook_secrets=(STRIPE_SECRET, OLD_STRIPE_SECRET),
        gocardless_webhook_secrets=(GOCARDLESS_SECRET, OLD_GOCARDLESS_SECRET),
        gocardless_access_token=ACCESS_TOKEN,
        liqpay_private_keys=(LIQPAY_KEY, OLD_LIQPAY_KEY),
        generic_webhook_secrets={"bank": (GENERIC_SECRET, OLD_GENERIC_SECRET)},
        epay_md5_secrets=(EPAY_SECRET,),
        epay_merchant_number=EPAY_MERCHANT,
        epay_api_url=f"{sandbox.url}/remote/payment.asmx",
        authorizenet_signature_keys=(AUTHORIZENET_KEY,),
        authorizenet_login_id=ANET_LOGIN_ID,
        authorizenet_transaction_key=ANET_TRANSACTION_KEY,
        authorizenet_api_url=f"{sandbox.url}/xml/v1/request.api",
        paypal_webhook_ids=(PAYPAL_WEBHOOK_ID,),
        paypal_cert_url_prefixes=(f"{sandbox.url}/paypal/",),
        paypal_cert_trust_file=paypal_trust_file,
        paypal_ipn_receiver_emails=(PAYPAL_RECEIVER,),
        paypal_ipn_url=f"{sandbox.url}/cgi-bin/webscr",
        braintree_keys=((BRAINTREE_PUBLIC, BRAINTREE_PRIVATE), ("old_public", "old_private")),
        braintree_merchant_id="payhooks_test_merchant",
        braintree_environment="sandbox",
        gocardless_base_url=sandbox.url,
        job_retry_base_seconds=0,
        job_retry_in_place_first_ms=5,
        log_format="text",
    )


@pytest.fixture
def worker_context(settings: Settings, redis: Redis) -> Iterator[context.WorkerContext]:
    ctx = context.build_context(settings)
    context.install(ctx)
    yield ctx
    context._current = None
    ctx.close()


@pytest.fixture
def queue(redis: Redis, settings: Settings) -> Queue:
    return Queue(settings.queue_name, connection=redis)


@pytest.fixture
def run_worker(
    queue: Queue, redis: Redis, worker_context: context.WorkerContext
) -> Callable[[], None]:
    """Drain the queue with a real RQ worker in burst mode (retries included)."""

    def run() -> None:
        SimpleWorker([queue], connection=redis).work(burst=True)

    return run


@pytest.fixture
def make_client(aiohttp_client: AiohttpClient, settings: Settings, redis: Redis) -> MakeClient:
    async def make(custom: Settings | None = None) -> TestClient:
        return await aiohttp_client(create_app(custom or settings))  # type: ignore[no-any-return]

    return make


@pytest.fixture
async def client(make_client: MakeClient) -> TestClient:
    """The receiver, over HTTP, with the fixture's settings."""
    return await make_client()
