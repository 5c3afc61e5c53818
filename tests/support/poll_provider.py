"""A poll-only provider that exists only in the tests: declared with a settings section, a
poller and a table entry, and nothing else (no receiver, no sample), as a provider whose API
must be asked (EziDebit) will be. Its stand-in is a tiny list API served over loopback.

The stand-in's list: ``GET /payments?after=<id>&limit=N`` answers
``{"data": [payment, ...], "has_more": bool}``, oldest first. A payment:
``{"id": "p1", "status": "paid", "invoice": 42, "amount": "100.00", "currency": "EUR",
"created": "2026-12-01T10:00:00+00:00"}``.

Run as ``python -m tests.support.poll_provider worker|scheduler``, it is `payhooks worker` or
`payhooks scheduler` with this provider added to the pollers table (the process tests).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from aiohttp import web

from payhooks.domain.events import (
    Ignored,
    InvoiceRef,
    Normalised,
    PaymentEvent,
    PaymentKind,
    RegularPaymentProvider,
)
from payhooks.providers.kit.polling import PolledPage, PollIntake
from payhooks.providers.kit.provider_api import ProviderApi
from payhooks.settings import ProviderSettings, Settings
from payhooks.settings.reading import Rows, setting, url, whole

NAME = "testpoll"
PAGE_SIZE = 2


@dataclass(frozen=True, slots=True)
class ListPollSettings(ProviderSettings):
    ENABLED_BY = None  # it sends no webhook: no URL
    POLL_ENABLED_BY = "api_url"

    api_url: str | None = setting("TESTPOLL_API_URL", None, url)
    poll_seconds: int = setting("TESTPOLL_POLL_SECONDS", 1, whole(minimum=1))

    def rows(self) -> Rows:
        return [("API", self.api_url or "not set"), ("poll every", f"{self.poll_seconds} s")]


class ListPoller:
    name = NAME

    def __init__(self, section: ListPollSettings) -> None:
        self.interval_seconds = section.poll_seconds
        self._url = f"{section.api_url}/payments"
        self._api = ProviderApi("the test provider's API", credentials=None)

    @classmethod
    def from_settings(cls, settings: Settings) -> ListPoller:
        return cls(settings.provider(ListPollSettings))

    def fetch(self, cursor: str | None) -> PolledPage:
        params = {"limit": str(PAGE_SIZE), **({"after": cursor} if cursor else {})}
        answer = self._api.send("GET", self._url, params=params).json()
        records = tuple(json.dumps(payment).encode() for payment in answer["data"])
        last = answer["data"][-1]["id"] if answer["data"] else cursor
        return PolledPage(records=records, cursor=last or "", more=bool(answer["has_more"]))

    def redact(self, record: bytes) -> bytes | None:
        return None  # it carries no card or bank details

    def normalise(self, record: bytes) -> list[Normalised]:
        payment = json.loads(record)
        event_id = f"{payment['id']}-{payment['status']}"
        if payment["status"] != "paid":
            return [Ignored(event_id, f"payment.{payment['status']}", "not a settled payment")]
        return [
            PaymentEvent(
                provider=NAME,
                event_id=event_id,
                event_type="payment.paid",
                kind=PaymentKind.PAID,
                token=payment["id"],
                invoice=InvoiceRef(invoice_id=int(payment["invoice"])),
                amount=Decimal(payment["amount"]),
                currency=payment["currency"],
                occurred_at=datetime.fromisoformat(payment["created"]),
                object_id=payment["id"],
                regular_payment_provider=RegularPaymentProvider.OTHER,
            )
        ]


#: The pollers table with the test provider in it.
POLL_TABLE = {NAME: PollIntake(ListPollSettings, ListPoller.from_settings)}


def with_poll(settings: Settings, api_url: str, poll_seconds: int = 1) -> Settings:
    return settings.with_provider(ListPollSettings(api_url=api_url, poll_seconds=poll_seconds))


# -- its stand-in ---------------------------------------------------------------------


def payment(number: int, invoice: int, status: str = "paid") -> dict[str, Any]:
    return {
        "id": f"p{number}",
        "status": status,
        "invoice": invoice,
        "amount": "100.00",
        "currency": "EUR",
        "created": "2026-12-01T10:00:00+00:00",
    }


@dataclass
class ListState:
    payments: list[dict[str, Any]] = field(default_factory=list)
    #: The ``after`` of every request, in order (None: from the start).
    requests: list[str | None] = field(default_factory=list)
    #: A request after this id waits (once) until ``released``: a run stuck mid-poll.
    stall_after: str | None = None
    stalled: int = 0
    released: bool = False


def list_app(state: ListState) -> web.Application:
    async def payments(request: web.Request) -> web.Response:
        after = request.query.get("after")
        limit = int(request.query.get("limit", "10"))
        state.requests.append(after)
        if after is not None and after == state.stall_after:
            state.stall_after = None
            state.stalled += 1
            while not state.released:
                await asyncio.sleep(0.02)
        ids = [p["id"] for p in state.payments]
        start = ids.index(after) + 1 if after in ids else 0
        page = state.payments[start : start + limit]
        return web.json_response({"data": page, "has_more": start + limit < len(state.payments)})

    app = web.Application()
    app.router.add_get("/payments", payments)
    return app


# -- `payhooks worker` and `payhooks scheduler` with the test provider ----------------------


def main(role: str) -> int:
    settings = Settings.from_env(os.environ).with_provider(ListPollSettings.from_env(os.environ))
    if role == "scheduler":
        from workers.scheduler import run_scheduler

        return run_scheduler(settings, POLL_TABLE)
    from rq import Queue

    from payhooks import logs
    from payhooks.storage import redis_connect
    from workers import context
    from workers.worker_process import PaymentWorker

    logs.configure(settings.log_format, settings.log_level)
    context.install(context.build_context(settings, POLL_TABLE))
    connection = redis_connect.sync_client(settings)
    PaymentWorker(
        [Queue(settings.queue_name, connection=connection)],
        connection=connection,
        maintenance_interval=settings.worker_maintenance_seconds,
        worker_ttl=settings.worker_maintenance_seconds + 15,
    ).work(with_scheduler=True, logging_level=settings.log_level)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
