"""Reconciling Spreedly (issue 19): `payhooks reconcile spreedly` reads the environment's
transactions list from its stand-in over HTTP (newest first, ``since_token`` pages), turns
each transaction into the event its callback would have given, and a real RQ worker
applies what no callback brought to the Nexudus sandbox.

Fixture: tests/fixtures/spreedly/list_transactions.json, records of Spreedly's API
reference examples (its ``_source`` names the pages): the list example's ``AddGateway``
and a test-gateway ``Purchase`` with a card, both ignored as their callbacks would be.
"""

from __future__ import annotations

import argparse
import copy
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from redis import Redis
from rq import Queue, SimpleWorker

from payhooks.cli.audit import run_audit
from payhooks.cli.reconcile import reconcile_providers
from payhooks.devtools.sandbox.nexudus import SandboxState
from payhooks.providers.kit.listing import Window
from payhooks.providers.spreedly import sample as samples
from payhooks.providers.spreedly.lister import SpreedlyLister
from payhooks.providers.spreedly.settings import SpreedlySettings
from payhooks.providers.spreedly.stand_in import SpreedlyState, transaction_record
from payhooks.settings import Settings
from payhooks.storage.trail import Trail
from tests.support.delivery import api_calls, deliver
from tests.support.paths import FIXTURES
from tests.support.settings import with_section

PUBLISHED = json.loads((FIXTURES / "spreedly" / "list_transactions.json").read_text())


def last(hours: float = 2) -> Window:
    now = datetime.now(tz=UTC).replace(microsecond=0)
    return Window(now - timedelta(hours=hours), now + timedelta(seconds=5))


def ago(**delta: float) -> datetime:
    return datetime.now(tz=UTC) - timedelta(**delta)


def purchase(
    state: SpreedlyState, token: str, invoice_id: int, created_at: datetime | None = None
) -> dict[str, Any]:
    record = transaction_record(token, invoice=str(invoice_id), amount="100.00")
    if created_at is not None:
        record["created_at"] = f"{created_at:%Y-%m-%dT%H:%M:%SZ}"
    state.transactions[token] = record
    return record


def published(state: SpreedlyState, created_at: datetime) -> list[dict[str, Any]]:
    """Spreedly's published records, dated ``created_at`` (when given) as listed."""
    records = copy.deepcopy(PUBLISHED["transactions"])
    for record in records:
        record["created_at"] = f"{created_at:%Y-%m-%dT%H:%M:%SZ}"
        state.transactions[record["token"]] = record
    return records


def drain(redis: Redis, settings: Settings) -> None:
    SimpleWorker([Queue(settings.queue_name, connection=redis)], connection=redis).work(burst=True)


def stages(redis: Redis, event_key: str) -> list[str]:
    return [str(e["stage"]) for e in Trail(redis, ttl_seconds=60).history(event_key)]


def test_published_records_are_ignored_as_their_callbacks_would_be_and_cards_redacted(
    settings: Settings,
) -> None:
    lister = SpreedlyLister.from_settings(settings)
    add_gateway, test_purchase = (json.dumps(t).encode() for t in PUBLISHED["transactions"])
    [ignored] = lister.normalise(add_gateway)
    assert (ignored.event_id, ignored.reason) == (  # type: ignore[union-attr]
        "XWV55noINCMAAjXhr1ppj0kjvCd:succeeded",
        "moves no money payhooks records",
    )
    [ignored] = lister.normalise(test_purchase)
    assert ignored.reason == "on Spreedly's test gateway"  # type: ignore[union-attr]
    assert lister.redact(add_gateway) is None
    redacted = json.loads(lister.redact(test_purchase) or b"{}")["payment_method"]
    assert (redacted["last_four_digits"], redacted["first_six_digits"]) == ("[redacted]",) * 2
    assert (redacted["month"], redacted["year"]) == ("[redacted]",) * 2


def test_a_missed_purchase_is_recovered_and_one_seen_by_callback_is_not_queued_twice(
    settings: Settings,
    redis: Redis,
    worker_context: Any,
    sandbox_state: SandboxState,
    spreedly_state: SpreedlyState,
) -> None:
    published(spreedly_state, ago(minutes=30))
    missed = purchase(spreedly_state, "MissedPurchase000000000001", 42)  # no callback came
    seen = purchase(spreedly_state, "SeenPurchase00000000000001", 43)
    callback = samples.callback(
        samples.transaction_xml(samples.values_for(seen), samples.DEV_SIGNING_SECRET)
    )
    assert [a.value for a in deliver(settings, "spreedly", callback)] == ["queued"]
    purchase(spreedly_state, "NoOrderPurchase00000000001", 44)["order_id"] = None
    purchase(spreedly_state, "OldPurchase000000000000001", 44, created_at=ago(days=3))

    [row] = reconcile_providers(settings, redis, last(), ["spreedly"])

    assert {k: row[k] for k in ("scanned", "seen", "queued", "ignored", "errors", "result")} == {
        "scanned": 5,  # not the one created before the window
        "seen": 1,
        "queued": 1,
        "ignored": 3,  # AddGateway, the test gateway's purchase, the one without order_id
        "errors": 0,
        "result": "ok",
    }
    [call] = spreedly_state.requests  # one page: it reaches before the window
    assert call == "GET /spreedly/v1/transactions.json?order=desc"
    drain(redis, settings)
    assert sandbox_state.invoices[42]["Paid"] is True
    assert sandbox_state.invoices[43]["Paid"] is True
    assert sandbox_state.invoices[44]["Paid"] is False
    key = f"spreedly:{missed['token']}:succeeded"  # as its callback's event is keyed
    assert stages(redis, key)[:2] == ["polled", "enqueued"]
    assert stages(redis, key)[-1] == "applied"
    assert stages(redis, f"spreedly:{seen['token']}:succeeded")[:2] == ["received", "enqueued"]

    calls_before = len(api_calls(sandbox_state))
    [again] = reconcile_providers(settings, redis, last(), ["spreedly"])
    assert (again["seen"], again["queued"]) == (2, 0)
    assert Queue(settings.queue_name, connection=redis).count == 0
    assert len(api_calls(sandbox_state)) == calls_before


def test_overlapping_pages_are_read_once_and_the_scan_stops_at_the_windows_start(
    settings: Settings, redis: Redis, spreedly_state: SpreedlyState
) -> None:
    # 45 in the window, ten to a second (ties ordered by token), 30 from before it.
    recent = [
        purchase(spreedly_state, f"Recent{n:021d}", 42, created_at=ago(seconds=60 + n // 10))
        for n in range(45)
    ]
    for n in range(30):
        purchase(spreedly_state, f"Old{n:024d}", 42, created_at=ago(days=3, seconds=n))
    spreedly_state.overlap = 3  # each later page repeats 3 records of the one before
    spreedly_state.list_faults = [200, 429, 429]
    waits: list[float] = []

    [row] = reconcile_providers(settings, redis, last(), ["spreedly"], sleep=waits.append)

    assert (row["scanned"], row["seen"], row["queued"], row["result"]) == (45, 0, 45, "ok")
    assert waits == [1.0, 2.0]  # 429 without Retry-After: backed off, not hammered
    # Pages of 20 from 0, 17 and 34 (3 repeated each time): the third reaches the old ones.
    assert len(spreedly_state.requests) == 5  # page 1, 429, 429, page 2, page 3
    assert all("since_token=" in r for r in spreedly_state.requests[1:])
    for record in recent:
        assert stages(redis, f"spreedly:{record['token']}:succeeded").count("enqueued") == 1


def test_refused_credentials_are_reported_without_the_secret(
    settings: Settings, redis: Redis, spreedly_state: SpreedlyState
) -> None:
    purchase(spreedly_state, "AnyPurchase000000000000001", 42)
    wrong = with_section(settings, SpreedlySettings, access_secret="not-the-access-secret-01")
    [row] = reconcile_providers(wrong, redis, last(), ["spreedly"])
    assert row["result"] == (
        "refused: Spreedly's API refused our credentials (401): check "
        "SPREEDLY_ENVIRONMENT_KEY and SPREEDLY_ACCESS_SECRET"
    )
    assert "not-the-access-secret" not in json.dumps(row)
    spreedly_state.list_faults = [502]
    [row] = reconcile_providers(settings, redis, last(), ["spreedly"])
    assert row["result"] == "unavailable: Spreedly's API answered 502"


def test_the_audit_sees_spreedly_purchases_missed_and_applied(
    settings: Settings,
    redis: Redis,
    worker_context: Any,
    sandbox_state: SandboxState,
    spreedly_state: SpreedlyState,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # A callback only says "this transaction changed" (a pending hint the job confirms), so
    # the audit reads what Spreedly's list says of it: a succeeded purchase, for how much.
    missed = purchase(spreedly_state, "MissedPurchase000000000001", 42)
    audit_args = argparse.Namespace(
        providers=["spreedly"], since="2h", until=None, dry_run=False, json=True
    )

    assert run_audit(settings, audit_args) == 1
    report = json.loads(capsys.readouterr().out)
    [finding] = report["discrepancies"]
    assert (finding["event"], finding["status"], finding["invoice"], finding["amount"]) == (
        f"spreedly:{missed['token']}:succeeded",
        "never_received",
        "42",
        "100.00 EUR",
    )

    reconcile_providers(settings, redis, last(), ["spreedly"])
    drain(redis, settings)
    assert run_audit(settings, audit_args) == 0
    report = json.loads(capsys.readouterr().out)
    assert (report["counts"]["applied"], report["discrepancies"]) == (1, [])
