"""A trail entry that cannot be read (an old release's JSON entry cut short, a value edited
by hand or corrupted, a line of today's short format with garbage) stops no reader: `trace`
and `failed show` show it as unreadable, a reconcile scan hands its event to record-once
rather than skip it (a duplicate job is turned away by the invoice's marker; a skipped
payment would be lost), and the audit leaves to a person what it cannot decide.

Each trail is written as the release that kept it would have (a list of JSON objects up
to main 8cd8f52, a string of lines since), with bad entries beside good ones; the
payments are the Stripe stand-in's, applied by a real RQ worker to the Nexudus sandbox.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from redis import Redis
from rq.job import Job

from payhooks.cli.audit import run_audit
from payhooks.cli.reconcile import UNREADABLE_TRAILS, reconcile_providers
from payhooks.devtools.sandbox.nexudus import SandboxState, invoice_record
from payhooks.providers.stripe.stand_in import StripeState
from payhooks.settings import Settings
from payhooks.storage import redis_keys
from payhooks.storage.trail import now_ms
from tests.ops.test_ops_commands import cli  # noqa: F401 (a fixture)
from tests.support.delivery import deliver
from tests.worker.test_reconcile import (  # noqa: F401 (fixtures)
    drain,
    last,
    rc_context,
    rc_settings,
    reconcile_args,
    row,
    stages,
    stripe_paid,
)

#: Entries no release wrote, as each kind of trail would hold them.
CUT_JSON = b'{"at":"2026-12-06T21:11:19.561Z","stage":"appl'
GARBAGE_LINE = b"\x00\xff garbage " + b"x" * 200
CUT_FIELDS = b'1796000000000 applied {"ti":900001,"tc":tr'


def old_trail(redis: Redis, event_key: str, *entries: bytes) -> None:
    """The trail as releases up to main 8cd8f52 kept it: a list of JSON objects."""
    key = redis_keys.trail(event_key)
    redis.delete(key)
    redis.rpush(key, *entries)


def string_trail(redis: Redis, event_key: str, *entries: bytes) -> None:
    """The trail as this release keeps it: one string, an entry a line."""
    redis.set(redis_keys.trail(event_key), b"\n".join(entries))


def test_trace_and_failed_show_print_an_unreadable_entry_beside_the_good_ones(
    cli: Any,  # noqa: F811
    redis: Redis,
) -> None:
    listed, lined = "stripe:evt_old_list", "stripe:evt_new_lines"
    old_trail(
        redis,
        listed,
        b'{"at":"2026-12-06T21:11:19.558Z","stage":"received","webhook":"payhooks:webhook:ab"}',
        b'{"at":"2026-12-06T21:11:19.558Z","stage":"enqueued"}',
        CUT_JSON,
    )
    string_trail(redis, lined, f"{now_ms()} received+enqueued".encode(), GARBAGE_LINE, CUT_FIELDS)

    code, out, _ = cli("trace", listed, "--json")
    assert code == 0
    assert json.loads(out)[listed] == [
        {"at": "2026-12-06T21:11:19.558Z", "stage": "received", "webhook": "payhooks:webhook:ab"},
        {"at": "2026-12-06T21:11:19.558Z", "stage": "enqueued"},
        {"at": "", "stage": "unreadable", "raw": CUT_JSON.decode(), "bytes": len(CUT_JSON)},
    ]
    code, out, _ = cli("trace", lined, "--json")
    assert code == 0
    received, enqueued, garbage, cut = json.loads(out)[lined]
    assert [received["stage"], enqueued["stage"], garbage["stage"]] == [
        "received",
        "enqueued",
        "unreadable",
    ]
    # Shortened, and nothing unprintable reaches the terminal.
    assert garbage["raw"] == "?? garbage " + "x" * 49 + "…"
    assert garbage["bytes"] == len(GARBAGE_LINE)
    assert (cut["stage"], cut["raw"]) == ("unreadable", CUT_FIELDS.decode())

    code, out, _ = cli("trace", lined)
    assert code == 0
    assert "unreadable  raw=?? garbage" in out
    assert all(len(line) <= 100 for line in out.splitlines())
    code, out, _ = cli("failed", "show", listed)
    assert code == 0
    assert "status     expired" in out
    assert "last       unreadable\n" in out
    assert "unreadable  raw=" + CUT_JSON.decode() in out


def test_a_scan_hands_an_event_with_an_unreadable_trail_to_record_once_never_skips_it(
    rc_settings: Settings,  # noqa: F811
    redis: Redis,
    rc_context: Any,  # noqa: F811
    sandbox_state: SandboxState,
    stripe_state: StripeState,
) -> None:
    # Never applied: its trail (today's lines) holds only an arrival and garbage.
    missed = stripe_paid(stripe_state, 42)
    missed_key = f"stripe:{missed['id']}"
    string_trail(redis, missed_key, f"{now_ms()} received".encode(), GARBAGE_LINE)
    # Applied by its webhook, its finished job gone, and its trail (an old release's list)
    # cut short where it said queued: queued again, the invoice's marker stops a 2nd write.
    applied = stripe_paid(stripe_state, 43, delivered=True)
    applied_key = f"stripe:{applied['id']}"
    deliver(rc_settings, "stripe", applied)
    drain(redis, rc_settings)
    assert sandbox_state.invoices[43]["PaidOn"] is not None
    redis.delete(Job.key_for(redis_keys.job_id(applied_key)))
    old_trail(
        redis,
        applied_key,
        b'{"at":"2026-12-06T21:11:19.558Z","stage":"received","webhook":"payhooks:webhook:ab"}',
        b'{"at":"2026-12-06T21:11:19.558Z","sta',
    )

    rows = reconcile_providers(rc_settings, redis, last(), ["stripe"])

    stripe = row(rows, "stripe")
    assert (stripe["scanned"], stripe["seen"], stripe["queued"]) == (2, 0, 2)
    assert stripe["result"] == f"2 {UNREADABLE_TRAILS}"
    drain(redis, rc_settings)
    assert sandbox_state.invoices[42]["PaidOn"] is not None
    assert stages(redis, missed_key)[-1] == "applied"
    assert stages(redis, applied_key)[-1] == "already_applied"
    tokens = [t for t in sandbox_state.tokens.values() if t.get("CoworkerInvoiceId") == 43]
    assert len(tokens) == 1


def test_the_audit_leaves_a_payment_whose_trail_it_cannot_read_to_a_person(
    rc_settings: Settings,  # noqa: F811
    redis: Redis,
    rc_context: Any,  # noqa: F811
    sandbox_state: SandboxState,
    stripe_state: StripeState,
    capsys: pytest.CaptureFixture[str],
) -> None:
    sandbox_state.invoices[60] = invoice_record(60, CurrencyCode="GBP")
    applied = stripe_paid(stripe_state, 43, delivered=True)
    held = stripe_paid(stripe_state, 60, delivered=True)  # EUR for a GBP invoice: held
    deliver(rc_settings, "stripe", applied, held)
    drain(redis, rc_settings)
    # An entry after the applied payment's outcome is damaged; the held one's outcome is.
    redis.append(redis_keys.trail(f"stripe:{applied['id']}"), b"\n" + CUT_FIELDS)
    held_key = f"stripe:{held['id']}"
    kept = redis.get(redis_keys.trail(held_key)) or b""
    string_trail(
        redis,
        held_key,
        *[line[:40] if b" failed " in line else line for line in kept.split(b"\n")],
    )

    assert run_audit(rc_settings, reconcile_args("stripe")) == 1

    report = json.loads(capsys.readouterr().out)
    assert report["counts"]["applied"] == 1  # Nexudus holds its token and PaidOn
    [finding] = report["discrepancies"]
    assert (finding["event"], finding["status"]) == (held_key, "unreadable")
    assert finding["why"].startswith(
        f"the trail of {held_key} holds an entry that cannot be read; without it, in flight"
    )
    assert finding["action"].startswith(f"`payhooks trace {held_key}` shows it")


def test_an_entry_whose_fields_name_a_stage_or_time_is_unreadable_never_a_queued_one(
    rc_settings: Settings,  # noqa: F811
    redis: Redis,
    rc_context: Any,  # noqa: F811
    sandbox_state: SandboxState,
    stripe_state: StripeState,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """No release writes a field named ``stage`` or ``at`` (they are the entry's own): one
    that holds them was damaged. Read as they said, such a field replaced the stage, so a
    payment whose trail said only "received" read as queued and a scan skipped it (the
    record-once script, which reads the stage itself, would have queued it), and a stage
    that is no text stopped the audit."""
    missed = stripe_paid(stripe_state, 42)
    missed_key = f"stripe:{missed['id']}"
    string_trail(redis, missed_key, f'{now_ms()} received {{"stage":"enqueued"}}'.encode())

    rows = reconcile_providers(rc_settings, redis, last(), ["stripe"])

    stripe = row(rows, "stripe")
    assert (stripe["scanned"], stripe["seen"], stripe["queued"]) == (1, 0, 1)
    drain(redis, rc_settings)
    assert sandbox_state.invoices[42]["PaidOn"] is not None
    assert stages(redis, missed_key)[-1] == "applied"

    # The audit reads the same trail with an entry whose stage is a list.
    redis.append(redis_keys.trail(missed_key), f'\n{now_ms()} applied {{"stage":[1]}}'.encode())
    capsys.readouterr()
    assert run_audit(rc_settings, reconcile_args("stripe")) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["counts"]["applied"] == 1
