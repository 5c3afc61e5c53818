"""Worker parts with rules of their own: Stripe lookup, rate limits, backoff, settings."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from decimal import Decimal

import pytest
from aiohttp import web
from redis import Redis

from payhooks.devtools.sandbox.nexudus import SandboxState
from payhooks.devtools.sandbox.server import ThreadedServer
from payhooks.providers.stripe import sample as samples
from payhooks.providers.stripe.settings import StripeSettings
from payhooks.settings import ConfigError, Settings
from tests.support.delivery import deliver
from tests.support.processes import RunWorker
from tests.support.settings import with_section
from workers import context
from workers.jobs import backoff_seconds
from workers.ratelimit import RateLimiter, Window


@pytest.fixture
def stripe_api() -> Iterator[tuple[ThreadedServer, dict[str, dict[str, object]]]]:
    """A stand-in for Stripe's GET /v1/payment_intents/{id}."""
    intents: dict[str, dict[str, object]] = {}

    async def retrieve(request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != "Bearer sk_test_payhooks":
            return web.json_response({"error": {"type": "invalid_request_error"}}, status=401)
        intent = intents.get(request.match_info["id"])
        if intent is None:
            return web.json_response(
                {"error": {"type": "invalid_request_error", "code": "resource_missing"}}, status=404
            )
        assert request.query.get("expand[0]") == "latest_charge"
        return web.json_response(intent)

    def make() -> web.Application:
        app = web.Application()
        app.router.add_get("/v1/payment_intents/{id}", retrieve)
        return app

    server = ThreadedServer(make).start()
    yield server, intents
    server.stop()


@pytest.mark.parametrize(("method", "provider"), [("us_bank_account", 11), ("card", 2)])
def test_payment_method_looked_up_when_the_webhook_does_not_say(
    settings: Settings,
    sandbox_state: SandboxState,
    redis: Redis,
    stripe_api: tuple[ThreadedServer, dict[str, dict[str, object]]],
    method: str,
    provider: int,
) -> None:
    from rq import Queue, SimpleWorker

    server, intents = stripe_api
    settings = with_section(
        settings, StripeSettings, api_key="sk_test_payhooks", api_base=server.url
    )
    intent = samples.payment_intent(
        invoice_id=42, amount=Decimal("100.00"), method=method, single_method_type=False
    )
    intents[intent["id"]] = {**intent, "latest_charge": samples.charge(intent)}
    ctx = context.build_context(settings)
    context.install(ctx)
    try:
        deliver(settings, "stripe", samples.event("payment_intent.succeeded", intent))
        SimpleWorker([Queue(settings.queue_name, connection=redis)], connection=redis).work(
            burst=True
        )
    finally:
        context._current = None
        ctx.close()
    [token] = sandbox_state.tokens.values()
    assert token["RegularPaymentProvider"] == provider
    assert sandbox_state.invoices[42]["PaidOn"] is not None


def test_without_api_key_an_unknown_method_is_recorded_as_stripe(
    settings: Settings, sandbox_state: SandboxState, run_worker: RunWorker
) -> None:
    intent = samples.payment_intent(
        invoice_id=42, amount=Decimal("100.00"), method="us_bank_account", single_method_type=False
    )
    deliver(settings, "stripe", samples.event("payment_intent.succeeded", intent))
    run_worker()
    [token] = sandbox_state.tokens.values()
    assert token["RegularPaymentProvider"] == 2
    assert "no STRIPE_API_KEY" in token["Notes"]


class TestRateLimiter:
    def test_waits_when_a_window_is_full(self, redis: Redis) -> None:
        waits: list[float] = []
        limiter = RateLimiter(
            redis,
            windows=[Window("test-calls", 3, 60_000), Window("test-writes", 1, 60_000, True)],
            sleep=lambda s: (waits.append(s), redis.delete("payhooks:rate:test-writes")),  # type: ignore[func-returns-value]
        )
        limiter.acquire(write=True)
        assert waits == []
        limiter.acquire(write=True)  # the write window is full: it must wait
        assert len(waits) == 1
        assert 59 < waits[0] <= 60

    def test_shared_by_every_limiter_on_the_same_redis(self, redis: Redis) -> None:
        waits: list[float] = []
        windows = [Window("shared", 2, 60_000)]
        first = RateLimiter(redis, windows=windows, sleep=waits.append)
        second = RateLimiter(
            redis, windows=windows, sleep=lambda s: (_ for _ in ()).throw(TimeoutError)
        )
        first.acquire(write=False)
        first.acquire(write=False)
        with pytest.raises(TimeoutError):
            second.acquire(write=False)

    def test_a_reservation_takes_all_its_slots_or_none(self, redis: Redis) -> None:
        # A GET, its POST and its PUT are reserved together, so the PUT never waits
        # for budget after the GET it carries: two writes fit only where two are free.
        windows = [Window("calls", 10, 60_000), Window("writes", 3, 60_000, True)]
        limiter = RateLimiter(redis, windows=windows, sleep=_no_waiting)
        limiter.acquire(write=True)
        limiter.acquire(write=True)
        with pytest.raises(TimeoutError):
            limiter.reserve([False, True, True])
        assert redis.zcard("payhooks:rate:writes") == 2
        assert redis.zcard("payhooks:rate:calls") == 2

    def test_reserved_slots_are_spaced_and_can_be_given_back(self, redis: Redis) -> None:
        windows = [Window("calls", 10, 60_000), Window("writes", 2, 60_000, True)]
        limiter = RateLimiter(redis, windows=windows, spacing_ms=100, sleep=_no_waiting)
        get, post, put = limiter.reserve([False, True, True])
        assert post.at - get.at == pytest.approx(0.1, abs=0.02)
        assert put.at - post.at == pytest.approx(0.1, abs=0.02)
        with pytest.raises(TimeoutError):  # both writes of the minute are reserved
            limiter.reserve([True])
        limiter.release([put])  # the invoice turned out not to need its PUT
        redis.delete("payhooks:rate:next-slot")
        limiter.reserve([True])

    def test_windows_are_longer_than_nexudus_by_the_margin(
        self, redis: Redis, settings: Settings
    ) -> None:
        # Nexudus counts a call when it arrives, a little after we took its slot.
        real = dataclasses.replace(
            settings, nexudus_writes_per_minute=60, nexudus_rate_margin_ms=2000
        )
        limiter = RateLimiter.for_nexudus(redis, real, sleep=_no_waiting)
        for _ in range(60):
            redis.delete("payhooks:rate:next-slot")  # the 100 ms spacing is not under test
            limiter.acquire(write=True)
        redis.delete("payhooks:rate:next-slot")
        with pytest.raises(TimeoutError, match=r"wait (\d+\.\d+) s") as waited:
            limiter.acquire(write=True)
        seconds = float(str(waited.value).split()[3])
        assert 61 < seconds <= 62


def _no_waiting(seconds: float) -> None:
    raise TimeoutError(f"asked to wait {seconds} s")


@pytest.mark.parametrize("attempt", [1, 2, 3, 5, 12])
def test_backoff_is_exponential_with_jitter(attempt: int) -> None:
    expected = min(10 * 2 ** (attempt - 1), 3600)
    for _ in range(20):
        delay = backoff_seconds(attempt, 10, None)
        assert expected * 0.8 <= delay <= expected * 1.2 + 1


def test_backoff_honours_retry_after() -> None:
    assert backoff_seconds(1, 10, 120) == 120
    assert backoff_seconds(1, 0, 2.5) == 3


class TestSettings:
    def test_defaults(self) -> None:
        settings = Settings.from_env({})
        assert settings.nexudus_base_url == "https://spaces.nexudus.com"
        assert settings.provider(StripeSettings).tolerance_seconds == 300
        assert settings.invoice_metadata_key == "nexudus_invoice_id"
        assert settings.failed_job_retention_days == 14

    def test_secrets_are_a_comma_separated_list(self) -> None:
        settings = Settings.from_env({"STRIPE_WEBHOOK_SECRETS": " whsec_a , whsec_b,"})
        assert settings.provider(StripeSettings).webhook_secrets == ("whsec_a", "whsec_b")

    def test_repr_hides_secrets(self) -> None:
        settings = Settings.from_env(
            {
                "STRIPE_WEBHOOK_SECRETS": "whsec_hidden",
                "NEXUDUS_PASSWORD": "hunter2",
                "STRIPE_API_KEY": "sk_live_hidden",
            }
        )
        text = repr(settings)
        assert "whsec_hidden" not in text
        assert "hunter2" not in text
        assert "sk_live_hidden" not in text

    def test_redis_password_never_in_errors(self) -> None:
        with pytest.raises(ConfigError) as info:
            Settings.from_env({"REDIS_URL": "redis//:s3cret@host"})
        assert "REDIS_URL" in str(info.value)
        assert "s3cret" not in str(info.value)
