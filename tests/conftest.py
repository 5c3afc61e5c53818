"""Fixtures: a real redis-server, the Nexudus sandbox over HTTP, real RQ workers."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from pytest_aiohttp import AiohttpClient
from redis import Redis
from rq import Queue, SimpleWorker
from xdist.scheduler import LoadScopeScheduling

from payhooks.devtools.dev_environment import dev_environment
from payhooks.devtools.embedded_redis import EmbeddedRedis
from payhooks.devtools.sandbox import add_stand_ins
from payhooks.devtools.sandbox.nexudus import SandboxState, create_sandbox_app, invoice_record
from payhooks.devtools.sandbox.server import ThreadedServer
from payhooks.providers.authorizenet.settings import AuthorizeNetSettings
from payhooks.providers.authorizenet.stand_in import AuthorizeNetState
from payhooks.providers.braintree.settings import BraintreeSettings
from payhooks.providers.braintree.stand_in import BraintreeState
from payhooks.providers.epay.stand_in import EPayState
from payhooks.providers.generic.settings import GenericSettings
from payhooks.providers.gocardless.settings import GoCardlessSettings
from payhooks.providers.gocardless.stand_in import GoCardlessState
from payhooks.providers.kit.samples import DevSandbox
from payhooks.providers.liqpay.settings import LiqPaySettings
from payhooks.providers.paypal.settings import PayPalIpnSettings, PayPalSettings
from payhooks.providers.paypal.stand_in import PayPalState
from payhooks.providers.spreedly.stand_in import SpreedlyState
from payhooks.providers.stripe.settings import StripeSettings
from payhooks.providers.stripe.stand_in import StripeState
from payhooks.providers.tools import STAND_INS
from payhooks.settings import Settings
from service.app import create_app
from tests.support.client import MakeClient
from tests.support.processes import Started
from tests.support.settings import (
    AUTHORIZENET_KEY,
    BRAINTREE_PRIVATE,
    BRAINTREE_PUBLIC,
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
    with_section,
)
from workers import context

#: Modules whose tests each start a dozen processes (Sentinel topologies; the fault script's
#: receiver and workers) and time elections and heartbeats. `scripts/test` runs the suite in
#: two pytest-xdist workers: these run one after another in one of them, never beside each
#: other, while every other test goes to whichever worker is free. (xdist's own
#: ``--dist loadgroup`` marks do not take with pytest 9: their nodeid suffix is lost.)
PROCESS_HEAVY = ("tests/deploy/test_fault.py::", "tests/deploy/test_failover.py::")


class ProcessHeavyApart(LoadScopeScheduling):
    def _split_scope(self, nodeid: str) -> str:
        return "process-heavy" if nodeid.startswith(PROCESS_HEAVY) else nodeid


@pytest.hookimpl(optionalhook=True)  # xdist's hook: `-p no:xdist` runs without it
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> LoadScopeScheduling | None:
    """For ``-n N`` (xdist's "load"); another ``--dist`` asked for is left to xdist."""
    return ProcessHeavyApart(config, log) if config.getoption("dist") == "load" else None


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
def braintree_state() -> BraintreeState:
    """Braintree's stand-in, knowing the tests' key pair (the settings fixture's) too."""
    state = BraintreeState()
    state.accounts[(BRAINTREE_PUBLIC, BRAINTREE_PRIVATE)] = "payhooks_test_merchant"
    return state


@pytest.fixture
def epay_state() -> EPayState:
    return EPayState()


@pytest.fixture
def stripe_state() -> StripeState:
    return StripeState()


@pytest.fixture
def spreedly_state() -> SpreedlyState:
    """The Spreedly stand-in's transactions (the sandbox fixture serves it)."""
    return SpreedlyState()


@pytest.fixture(scope="session")
def paypal_keys() -> PayPalState:
    return PayPalState()  # RSA keys take a while to make: once per session


@pytest.fixture
def paypal_state(paypal_keys: PayPalState) -> PayPalState:
    paypal_keys.invalid_txns.clear()
    paypal_keys.genuine.clear()
    paypal_keys.postbacks.clear()
    paypal_keys.clear_api()
    return paypal_keys


@pytest.fixture
def sandbox(
    request: pytest.FixtureRequest, sandbox_state: SandboxState
) -> Iterator[ThreadedServer]:
    """The Nexudus sandbox with every provider's stand-in from the registry.

    A test reads a stand-in's state through its ``<name>_state`` fixture (``gocardless_state``);
    a stand-in without one starts empty.
    """
    states: dict[str, object] = {}
    for name in STAND_INS:
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


@pytest.fixture(scope="session")
def dev_files(tmp_path_factory: pytest.TempPathFactory) -> str:
    return str(tmp_path_factory.mktemp("dev"))


@pytest.fixture
def settings(
    redis_server: EmbeddedRedis,
    sandbox: ThreadedServer,
    sandbox_state: SandboxState,
    paypal_keys: PayPalState,
    dev_files: str,
) -> Settings:
    """What `payhooks dev` runs with (every provider at its stand-in, from the registry),
    quick to retry, plus what the tests need beyond it (below)."""
    dev = dev_environment(DevSandbox(sandbox.url, dev_files, {"paypal": paypal_keys}), {})
    settings = Settings.from_env(
        {
            **dev,
            "REDIS_URL": redis_server.url,
            "NEXUDUS_BASE_URL": sandbox.url,
            "NEXUDUS_USERNAME": sandbox_state.username,
            "NEXUDUS_PASSWORD": sandbox_state.password,
            "NEXUDUS_TIMEOUT_SECONDS": "5",
            "NEXUDUS_WRITES_PER_MINUTE": "10000",
            "NEXUDUS_CALLS_PER_MINUTE": "10000",
            "NEXUDUS_MIN_INTERVAL_MS": "0",
            "JOB_RETRY_BASE_SECONDS": "0",
            "JOB_RETRY_IN_PLACE_FIRST_MS": "5",
            "LOG_FORMAT": "text",
        }
    )
    # A previous secret next to each current one (rotation), the providers' published test
    # keys, and the production defaults `payhooks dev` relaxes for its samples.
    for section, changes in (
        (StripeSettings, {"webhook_secrets": (STRIPE_SECRET, OLD_STRIPE_SECRET)}),
        (StripeSettings, {"allow_test_mode": False}),
        (GoCardlessSettings, {"webhook_secrets": (GOCARDLESS_SECRET, OLD_GOCARDLESS_SECRET)}),
        (LiqPaySettings, {"private_keys": (LIQPAY_KEY, OLD_LIQPAY_KEY)}),
        (GenericSettings, {"webhook_secrets": {"bank": (GENERIC_SECRET, OLD_GENERIC_SECRET)}}),
        (AuthorizeNetSettings, {"signature_keys": (AUTHORIZENET_KEY,), "currency": "USD"}),
        (PayPalSettings, {"webhook_ids": (PAYPAL_WEBHOOK_ID,)}),
        (PayPalIpnSettings, {"receiver_emails": (PAYPAL_RECEIVER,)}),
        (
            BraintreeSettings,
            {
                "keys": ((BRAINTREE_PUBLIC, BRAINTREE_PRIVATE), ("old_public", "old_private")),
                "merchant_id": "payhooks_test_merchant",
            },
        ),
    ):
        settings = with_section(settings, section, **changes)
    return settings


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
def processes(tmp_path: Path) -> Iterator[Started]:
    """Start `payhooks` processes that are stopped when the test ends, whatever its outcome."""
    started = Started(tmp_path)
    yield started
    started.stop_all()


@pytest.fixture
def make_client(aiohttp_client: AiohttpClient, settings: Settings, redis: Redis) -> MakeClient:
    async def make(custom: Settings | None = None) -> TestClient:
        return await aiohttp_client(create_app(custom or settings))  # type: ignore[no-any-return]

    return make


@pytest.fixture
async def client(make_client: MakeClient) -> TestClient:
    """The receiver, over HTTP, with the fixture's settings."""
    return await make_client()
