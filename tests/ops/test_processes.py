"""The `payhooks` command as a user runs it: real processes, real signals."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from decimal import Decimal
from pathlib import Path

import httpx
import pytest

from payhooks.devtools.dev import TRIES
from payhooks.devtools.embedded_redis import free_port
from payhooks.devtools.sandbox.nexudus import INVOICES, TOKENS, SandboxState
from payhooks.devtools.sandbox.server import wait_until_ready
from payhooks.providers.stripe import sample as samples
from payhooks.settings import Settings
from tests.support.delivery import deliver, writes
from tests.support.processes import PAYHOOKS, Started, worker_env
from tests.support.settings import STRIPE_SECRET


def test_parallel_workers_give_one_token_and_one_put_per_payment(
    settings: Settings, sandbox_state: SandboxState, redis: object, processes: Started
) -> None:
    events = []
    intents = []
    for invoice_id in (42, 43):
        intent = samples.payment_intent(invoice_id=invoice_id, amount=Decimal("100.00"))
        intents.append(intent)
        events += [
            samples.event("payment_intent.succeeded", intent),
            samples.event("charge.succeeded", samples.charge(intent)),
            samples.event("invoice.paid", samples.invoice_paid(intent)),
            samples.event("checkout.session.completed", samples.checkout_session(intent)),
        ]
    deliver(settings, "stripe", *events)

    env = worker_env(settings)
    workers = [processes.start([*PAYHOOKS, "worker", "--burst"], env) for _ in range(3)]
    assert processes.wait(*workers, timeout=90) == [0, 0, 0]
    logs = b"".join(processes.stderr(w) for w in workers)

    assert sorted(t["Token"] for t in sandbox_state.tokens.values()) == sorted(
        i["id"] for i in intents
    )
    assert len(writes(sandbox_state, "PUT")) == 2
    assert sandbox_state.invoices[42]["PaidOn"]
    assert sandbox_state.invoices[43]["PaidOn"]
    # Structured logs name the event, never a credential or token.
    assert b'"event":"billing.applied"' in logs
    for secret in (settings.nexudus_password, *sandbox_state.access_tokens, STRIPE_SECRET):
        assert secret is not None
        assert secret.encode() not in logs


@pytest.mark.parametrize(
    ("command", "env", "named"),
    [
        ("serve", {"STRIPE_WEBHOOK_SECRETS": "whsec_x"}, "REDIS_URL"),
        ("serve", {"REDIS_URL": "redis://127.0.0.1:1/0"}, "STRIPE_WEBHOOK_SECRETS"),
        (
            "worker",
            {"REDIS_URL": "redis://127.0.0.1:1/0", "NEXUDUS_USERNAME": "a"},
            "NEXUDUS_PASSWORD",
        ),
        ("serve", {"REDIS_URL": "not a url"}, "REDIS_URL"),
        ("worker", {"JOB_MAX_ATTEMPTS": "many"}, "JOB_MAX_ATTEMPTS"),
        ("serve", {"STRIPE_TOLERANCE_SECONDS": "-5"}, "STRIPE_TOLERANCE_SECONDS"),
    ],
)
def test_missing_or_malformed_setting_stops_start_up_naming_it(
    command: str, env: dict[str, str], named: str
) -> None:
    result = subprocess.run(  # noqa: PLW1510
        [*PAYHOOKS, command],
        env={"PATH": os.environ.get("PATH", ""), **env},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert named in result.stderr
    assert "Traceback" not in result.stderr


def _wait_until(predicate: object, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if predicate():  # type: ignore[operator]
                return True
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    return False


@pytest.mark.slow
def test_dev_mode_and_the_banners_send_tests_mark_every_providers_invoice_paid(
    tmp_path: Path,
) -> None:
    port, sandbox_port = free_port(), free_port()
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "NEXUDUS_", "STRIPE_"))
    }
    dev = subprocess.Popen(
        [*PAYHOOKS, "dev", "--port", str(port), "--sandbox-port", str(sandbox_port)],
        cwd=tmp_path,  # where it writes .payhooks-dev/
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    sandbox = f"http://127.0.0.1:{sandbox_port}/_sandbox/state"
    urls = [
        "--url",
        f"http://127.0.0.1:{port}",
        "--sandbox-url",
        f"http://127.0.0.1:{sandbox_port}",
    ]
    try:
        assert wait_until_ready(f"http://127.0.0.1:{port}/readyz")
        # The banner's suggestions, each paying an invoice of its own.
        for attempt in TRIES:
            arguments, invoice_id, provider_value = (
                attempt.arguments(),
                attempt.invoice_id,
                attempt.provider_value,
            )
            sent = subprocess.run(  # noqa: PLW1510
                [*PAYHOOKS, "send-test", *arguments, *urls],
                env=env,
                capture_output=True,
                text=True,
                timeout=30,
            )
            assert sent.returncode == 0, sent.stdout + sent.stderr
            assert "-> 200" in sent.stdout

            def applied(invoice_id: int = invoice_id, value: int = provider_value) -> bool:
                state = httpx.get(sandbox).json()
                invoice = next(i for i in state["invoices"] if i["Id"] == invoice_id)
                return bool(invoice["PaidOn"]) and any(
                    t["CoworkerInvoiceId"] == invoice_id and t["RegularPaymentProvider"] == value
                    for t in state["tokens"]
                )

            assert _wait_until(applied, 20), arguments[0]
            if arguments[0] == "stripe":
                calls = [(c["method"], c["path"]) for c in httpx.get(sandbox).json()["calls"]]
                assert calls == [("GET", f"{INVOICES}/42"), ("POST", TOKENS), ("PUT", INVOICES)]
        invoices = httpx.get(sandbox).json()["invoices"]
        assert sorted(i["Id"] for i in invoices if i["PaidOn"]) == sorted(
            t.invoice_id for t in TRIES
        )
    finally:
        dev.send_signal(signal.SIGINT)
        output, _ = dev.communicate(timeout=30)
    assert dev.returncode == 0, output
    for attempt in TRIES:
        assert f"send-test {' '.join(attempt.arguments())}" in output


def test_check_config_names_what_is_missing_and_never_a_secret() -> None:
    env = {
        "PATH": os.environ.get("PATH", ""),
        "REDIS_URL": "redis://:redis-password@127.0.0.1:6379/0",
        "GOCARDLESS_WEBHOOK_SECRETS": "gc-secret-value",
        "NEXUDUS_USERNAME": "api@example.com",
        "NEXUDUS_PASSWORD": "nexudus-password",
    }
    result = subprocess.run(  # noqa: PLW1510
        [*PAYHOOKS, "check-config"], env=env, capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 2
    assert "GOCARDLESS_ACCESS_TOKEN is not" in result.stderr
    assert "redis://:***@127.0.0.1:6379/0" in result.stdout
    assert "providers enabled            gocardless" in result.stdout
    for secret in ("redis-password", "gc-secret-value", "nexudus-password"):
        assert secret not in result.stdout + result.stderr
