"""Reconciling PayPal (issue 19): `payhooks reconcile paypal` reads PayPal's webhook events
list from its stand-in over HTTP with a client-credentials token, hands what no webhook
brought to the record-once hand-off, and a real RQ worker applies it to the Nexudus sandbox.

Fixture: tests/fixtures/paypal/list_event_notifications.json, the "List event
notifications" response of PayPal's own PHP SDK fixture (its ``_source`` names the file
and commit): its envelope (``events``, ``count``, ``links`` with an escaped ``next``) and
its two ``PAYMENT.AUTHORIZATION.CREATED`` events, which the webhook ignores too.
"""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from redis import Redis
from rq import Queue, SimpleWorker

from payhooks.cli.reconcile import reconcile_providers
from payhooks.devtools.sandbox.nexudus import SandboxState
from payhooks.domain.events import Ignored
from payhooks.providers.kit.listing import Window
from payhooks.providers.paypal.lister import PayPalLister, next_query
from payhooks.providers.paypal.settings import PayPalSettings
from payhooks.providers.paypal.stand_in import PayPalState, capture_event
from payhooks.settings import Settings
from payhooks.storage.trail import Trail
from tests.support.delivery import api_calls, deliver
from tests.support.paths import FIXTURES
from tests.support.settings import with_section

PUBLISHED = json.loads((FIXTURES / "paypal" / "list_event_notifications.json").read_text())
TOKEN_CALL = "POST /v1/oauth2/token"


def last(hours: float = 2) -> Window:
    now = datetime.now(tz=UTC).replace(microsecond=0)
    return Window(now - timedelta(hours=hours), now + timedelta(seconds=5))


def paid(state: PayPalState, invoice_id: int) -> dict[str, Any]:
    event = capture_event(invoice_id=str(invoice_id), amount=Decimal("100.00"))
    state.events.append(event)
    return event


def published_events(state: PayPalState) -> None:
    """PayPal's published events, dated within the window (as listed, otherwise)."""
    for event in copy.deepcopy(PUBLISHED["events"]):
        event["create_time"] = f"{datetime.now(tz=UTC) - timedelta(minutes=5):%Y-%m-%dT%H:%M:%SZ}"
        state.events.append(event)


def drain(redis: Redis, settings: Settings) -> None:
    SimpleWorker([Queue(settings.queue_name, connection=redis)], connection=redis).work(burst=True)


def stages(redis: Redis, event_key: str) -> list[str]:
    return [str(e["stage"]) for e in Trail(redis, ttl_seconds=60).history(event_key)]


def listed(state: PayPalState) -> list[str]:
    return [r for r in state.requests if r.startswith("GET /v1/notifications/webhooks-events")]


def test_the_published_list_response_pages_by_its_next_link_and_is_ignored_as_webhooks_are(
    settings: Settings,
) -> None:
    query = next_query(PUBLISHED["links"])
    assert query is not None
    # PayPal's copy escapes '&' twice: read as the link means, not as "amp;amp;end_time".
    assert query.split("&") == [
        "start_time=2014-08-04T12:46:47-07:00",
        "end_time=2014-09-18T12:46:47-07:00",
        "page_size=2",
        "move_to=next",
        "index_time=2014-09-17T23:07:35Z",
        "index_id=3",
    ]
    assert next_query([link for link in PUBLISHED["links"] if link["rel"] != "next"]) is None
    lister = PayPalLister.from_settings(settings)
    for event in PUBLISHED["events"]:
        [ignored] = lister.normalise(json.dumps(event).encode())
        assert isinstance(ignored, Ignored)
        assert (ignored.event_id, ignored.reason) == (event["id"], "event type not handled")


def test_a_missed_payment_is_recovered_and_one_seen_by_webhook_is_not_queued_twice(
    settings: Settings,
    redis: Redis,
    worker_context: Any,
    sandbox_state: SandboxState,
    paypal_state: PayPalState,
) -> None:
    published_events(paypal_state)
    missed = paid(paypal_state, 42)  # its webhook never came
    seen = paid(paypal_state, 43)
    assert [a.value for a in deliver(settings, "paypal", seen)] == ["queued"]

    [row] = reconcile_providers(settings, redis, last(), ["paypal"])

    assert {k: row[k] for k in ("scanned", "seen", "queued", "ignored", "errors", "result")} == {
        "scanned": 4,
        "seen": 1,
        "queued": 1,
        "ignored": 2,  # the published authorizations, as their webhooks would be
        "errors": 0,
        "result": "ok",
    }
    assert paypal_state.requests.count(TOKEN_CALL) == 1
    [call] = listed(paypal_state)
    assert call.count("_time=") == 2  # start_time and end_time
    assert "page_size=100" in call
    drain(redis, settings)
    assert sandbox_state.invoices[42]["Paid"] is True
    assert sandbox_state.invoices[43]["Paid"] is True
    trail = stages(redis, f"paypal:{missed['id']}")
    assert trail[:2] == ["polled", "enqueued"]
    assert trail[-1] == "applied"
    assert stages(redis, f"paypal:{seen['id']}")[:2] == ["received", "enqueued"]

    # A second run: every event seen, nothing written, no Nexudus call.
    calls_before = len(api_calls(sandbox_state))
    [again] = reconcile_providers(settings, redis, last(), ["paypal"])
    assert (again["seen"], again["queued"], again["ignored"]) == (2, 0, 2)
    assert Queue(settings.queue_name, connection=redis).count == 0
    assert len(api_calls(sandbox_state)) == calls_before


def test_pages_follow_next_links_and_a_429_is_waited_for(
    settings: Settings, redis: Redis, paypal_state: PayPalState
) -> None:
    events = [paid(paypal_state, 42 + n % 3) for n in range(250)]  # 3 pages of 100
    paypal_state.list_faults = [200, 429, 429]  # the second page, twice throttled
    waits: list[float] = []

    [row] = reconcile_providers(settings, redis, last(), ["paypal"], sleep=waits.append)

    assert (row["scanned"], row["queued"], row["result"]) == (250, 250, "ok")
    assert waits == [1.0, 2.0]  # PayPal sends no Retry-After: the scan backs off
    calls = listed(paypal_state)
    assert len(calls) == 5  # page 1, 429, 429, page 2, page 3
    # The next link's query, on our own base: move_to and index_id as PayPal writes them.
    assert all("move_to=next" in c and "&amp;" not in c for c in calls[1:])
    assert [c.rsplit("index_id=", 1)[-1] for c in calls[3:]] == ["100", "200"]
    assert paypal_state.requests.count(TOKEN_CALL) == 1  # one token for the whole scan
    for event in events[:3]:
        assert stages(redis, f"paypal:{event['id']}").count("enqueued") == 1


def test_refused_credentials_and_an_unavailable_api_are_reported_without_the_secret(
    settings: Settings, redis: Redis, paypal_state: PayPalState
) -> None:
    paid(paypal_state, 42)
    wrong = with_section(settings, PayPalSettings, client_secret="not-the-dev-secret-0123")
    [row] = reconcile_providers(wrong, redis, last(), ["paypal"])
    assert row["result"].startswith("refused: PayPal's OAuth token endpoint refused")
    assert "PAYPAL_CLIENT_SECRET" in row["result"]
    assert "not-the-dev-secret" not in json.dumps(row)

    paypal_state.list_faults = [503]
    [row] = reconcile_providers(settings, redis, last(), ["paypal"])
    assert row["result"] == "unavailable: PayPal's webhook events list answered 503"

    unset = with_section(settings, PayPalSettings, client_id=None)
    [row] = reconcile_providers(unset, redis, last(), ["paypal"])
    assert row["result"].startswith("skipped: PAYPAL_CLIENT_ID and PAYPAL_CLIENT_SECRET")
