"""Outputs an operator reads and must be able to believe: a token's note after a replay,
ops commands into a closed pipe, the sandbox's summary, and dev samples dated now."""

from __future__ import annotations

import os
import subprocess
from datetime import UTC, datetime, timedelta

import httpx
from redis import Redis

from payhooks.cli.ops import Filters, Ops
from payhooks.devtools.sandbox.nexudus import SandboxState
from payhooks.devtools.sandbox.server import ThreadedServer
from payhooks.providers.forte import sample as forte_samples
from payhooks.providers.forte.stand_in import transaction_record
from payhooks.providers.stripe.sample import paid_event
from payhooks.settings import Settings
from tests.support.delivery import deliver
from tests.support.processes import PAYHOOKS, RunWorker, worker_env


def notes_of(state: SandboxState, invoice_id: int) -> list[str]:
    return [str(t["Notes"]) for t in state.tokens.values() if t["CoworkerInvoiceId"] == invoice_id]


def test_a_refused_payments_note_stays_true_once_a_replay_marks_the_invoice_paid(
    settings: Settings, redis: Redis, sandbox_state: SandboxState, run_worker: RunWorker
) -> None:
    sandbox_state.invoices[42]["CurrencyCode"] = "GBP"  # the payment is in EUR
    deliver(settings, "stripe", paid_event(42))
    run_worker()
    ops = Ops(settings, redis)
    [failed], _ = ops.failed_jobs(Filters())
    assert failed.error_class == "AmountMismatch"

    sandbox_state.invoices[42]["CurrencyCode"] = "EUR"  # corrected, as the README says
    ops.replay([failed.job_id])
    run_worker()
    assert sandbox_state.invoices[42]["PaidOn"]
    [note] = notes_of(sandbox_state, 42)
    # Read on a paid invoice, the note must not say it is not paid: it says when it was not.
    assert "NOT marked paid:" not in note
    assert "not marked paid when this token was recorded: payment currency EUR" in note
    assert "a replay after the invoice is corrected marks it paid" in note


def _into_closed_pipe(settings: Settings, *argv: str) -> subprocess.CompletedProcess[str]:
    """Run `payhooks …` with stdout a pipe whose reader is gone, as after `| head -2`."""
    read, write = os.pipe()
    os.close(read)
    try:
        return subprocess.run(  # noqa: PLW1510
            [*PAYHOOKS, *argv],
            env=worker_env(settings),
            stdout=write,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
        )
    finally:
        os.close(write)


def test_ops_output_into_a_closed_pipe_ends_quietly(
    settings: Settings, sandbox_state: SandboxState, run_worker: RunWorker
) -> None:
    event = paid_event(77)  # no such invoice: a failed job with a trail
    deliver(settings, "stripe", event)
    run_worker()
    for argv in (("trace", "77"), ("failed", "show", event["id"]), ("failed", "list")):
        done = _into_closed_pipe(settings, *argv)
        assert done.stderr == "", (argv, done.stderr)  # no traceback, no "Exception ignored"
        assert done.returncode == 141, argv  # as a shell reports a tool ended by SIGPIPE


def test_the_sandbox_summarises_each_invoice_in_a_line(
    settings: Settings, sandbox: ThreadedServer, run_worker: RunWorker
) -> None:
    event = paid_event(42)
    deliver(settings, "stripe", event)
    run_worker()
    text = httpx.get(f"{sandbox.url}/_sandbox/invoices?summary", timeout=10).text
    header, *rows = text.splitlines()
    assert header.split() == ["ID", "NUMBER", "TOTAL", "PAID_ON", "TOKENS"]
    paid = next(r for r in rows if r.startswith("42 "))
    token = event["data"]["object"]["id"]
    assert "100.00 EUR" in paid
    assert f"{token} (2)" in paid
    assert "not paid" not in paid
    assert "not paid" in next(r for r in rows if r.startswith("43 "))
    records = httpx.get(f"{sandbox.url}/_sandbox/invoices", timeout=10).json()
    [tokens] = [r["Tokens"] for r in records if r["Id"] == 42]
    assert [t["Token"] for t in tokens] == [token]
    assert tokens[0]["Notes"].startswith("payhooks: stripe")


def test_the_forte_sample_and_stand_in_are_dated_now(
    settings: Settings, sandbox: ThreadedServer, sandbox_state: SandboxState, run_worker: RunWorker
) -> None:
    # As `send-test forte` does: register the sale with the stand-in, then the webhook.
    webhook = forte_samples.webhook(order_number="42")
    transaction_id = webhook["transaction"]["transaction_id"]
    httpx.post(
        f"{sandbox.url}/_sandbox/forte/transactions",
        json={"id": transaction_id, "order_number": "42", "amount": "100.00"},
        timeout=10,
    ).raise_for_status()
    deliver(settings, "forte", webhook)
    run_worker()
    paid_on = datetime.fromisoformat(sandbox_state.invoices[42]["PaidOn"])
    assert abs(datetime.now(tz=UTC) - paid_on) < timedelta(minutes=5)
    for when in (
        webhook["transaction"]["received_date"],
        transaction_record("trn_x", order_number="1", amount="1")["received_date"],
    ):
        assert abs(datetime.now(tz=UTC) - datetime.fromisoformat(when)) < timedelta(minutes=5)
