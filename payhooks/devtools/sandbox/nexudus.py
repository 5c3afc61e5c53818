"""A local stand-in for the Nexudus endpoints payhooks uses, faithful to the docs.

It is strict where the real API is, so it catches our mistakes:
- ``POST /api/token`` takes a form-encoded password or refresh-token grant (JSON gets
  ``unsupported_grant_type``); refresh tokens rotate; access tokens expire.
- Every API call needs a live bearer token, else 401.
- ``PUT /api/billing/coworkerinvoices`` replaces the whole record: the documented
  required fields must be present, any writable field left out is cleared, read-only
  fields are ignored. Setting ``PaidOn`` marks the invoice paid in full (an assumption:
  what the real Nexudus does with Paid/PaidAmount is unverified, see the README).
- Listings are partial records (as documented) and string filters match substrings.
- Errors use the documented envelopes; throttling answers 429 with ``Retry-After``.

Control endpoints under ``/_sandbox/`` (no auth) seed invoices, script faults and
report every call, for the tests, the benchmark and `payhooks dev`.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import secrets
import time
import uuid
from collections import Counter, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

INVOICES = "/api/billing/coworkerinvoices"
TOKENS = "/api/billing/coworkerinvoicepaymenttokens"

REQUIRED_ON_PUT = (
    "Id",
    "CoworkerId",
    "BusinessId",
    "InvoiceNumber",
    "BillToName",
    "BillToAddress",
    "BillToCity",
    "BillToPostCode",
    "BillToCountryId",
    "CurrencyId",
)
READ_ONLY = frozenset(
    {
        "Paid",
        "PaidAmount",
        "ReceivedAmount",
        "CreditedAmount",
        "CreditNote",
        "Refunded",
        "RefundedAmount",
        "RefundedOn",
        "Sent",
        "SentOn",
        "TotalAmount",
        "TaxAmount",
        "DiscountAmount",
        "Description",
        "OriginalInvoiceGuid",
        "ContractGuid",
        "CurrencyCode",
        "CoworkerFullName",
        "BusinessName",
        "BillToCountryName",
        "Void",
        "UniqueId",
        "CreatedOn",
        "UpdatedOn",
        "UpdatedBy",
        "IsNew",
        "ToStringText",
        "LocalizationDetails",
    }
)
# What the invoice listing leaves out: a PUT built from a listing fails validation.
NOT_IN_LISTING = (
    "BillToAddress",
    "BillToCity",
    "BillToPostCode",
    "BillToPhone",
    "BillToState",
    "PurchaseOrder",
    "CustomData",
    "SystemId",
    "CustomFields",
    "InvoiceFromDate",
    "InvoiceToDate",
    "DueDate",
)
PROVIDERS = frozenset({1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 94, 95, 96, 97, 98, 99})


def now_iso() -> str:
    return datetime.now(tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def invoice_record(invoice_id: int, **overrides: Any) -> dict[str, Any]:
    """A full CoworkerInvoice as GET returns it."""
    record: dict[str, Any] = {
        "Id": invoice_id,
        "UniqueId": str(uuid.uuid4()),
        "CoworkerId": 5000 + invoice_id,
        "CoworkerFullName": f"Member {invoice_id}",
        "BusinessId": 77,
        "BusinessName": "Sandbox Coworking",
        "InvoiceNumber": f"INV-{invoice_id:05d}",
        "PaymentReference": f"REF{invoice_id}",
        "BillToName": f"Member {invoice_id}",
        "BillToAddress": "1 Sandbox Street",
        "BillToCity": "London",
        "BillToPostCode": "N1 1AA",
        "BillToState": None,
        "BillToPhone": "+44 20 0000 0000",
        "BillToCountryId": 1220,
        "PurchaseOrder": f"PO-{invoice_id}",
        "CustomData": None,
        "SystemId": None,
        "CustomFields": None,
        "CurrencyId": 2,
        "CurrencyCode": "EUR",
        "TotalAmount": 100.0,
        "PaidAmount": 0.0,
        "TaxAmount": 16.67,
        "DiscountAmount": 0.0,
        "DueDate": "2026-12-01T00:00:00Z",
        "InvoiceFromDate": "2026-11-01T00:00:00Z",
        "InvoiceToDate": "2026-11-30T00:00:00Z",
        "Draft": False,
        "Void": False,
        "CreditNote": False,
        "Paid": False,
        "PaidOn": None,
        "Refunded": False,
        "Sent": True,
        "DoNotApplyCreditAutomatically": False,
        "CreatedOn": "2026-11-01T09:00:00Z",
        "UpdatedOn": "2026-11-01T09:00:00Z",
        "UpdatedBy": "sandbox@example.com",
        "IsNew": False,
    }
    record.update(overrides)
    return record


@dataclass
class Fault:
    """A scripted failure for the next ``times`` matching calls (status 0: the connection
    is dropped without an answer; status 200: a slow answer after ``delay``)."""

    method: str
    path: str
    status: int
    times: int = 1
    retry_after: float | None = None
    delay: float = 0.0
    #: Apply the write before failing: the caller cannot tell whether it landed.
    after_apply: bool = False
    #: A JSON body to answer with (default: the generic 500 envelope).
    body: Any = None
    #: Status 200 with a delay: the write lands after ``delay`` even if the caller gave up
    #: waiting meanwhile (a request that timed out on the caller's side, applied later).
    lands_late: bool = False


@dataclass
class Call:
    method: str
    path: str
    status: int
    at: float
    write: bool
    #: The invoice a GET or PUT of one invoice was about (for the GET-to-PUT gap).
    invoice_id: int | None = None


@dataclass
class SandboxState:
    username: str = "api@sandbox.example"
    password: str = "sandbox-password"  # noqa: S105 (the sandbox's fixed test user)
    token_lifetime_seconds: int = 3600
    writes_per_minute: int = 60
    calls_per_minute: int = 1000
    fail_rate: float = 0.0
    invoices: dict[int, dict[str, Any]] = field(default_factory=dict)
    tokens: dict[int, dict[str, Any]] = field(default_factory=dict)
    access_tokens: dict[str, float] = field(default_factory=dict)
    refresh_tokens: set[str] = field(default_factory=set)
    faults: list[Fault] = field(default_factory=list)
    calls: list[Call] = field(default_factory=list)
    grants: int = 0
    #: Invoice PUTs that were applied, per invoice (whatever the caller was answered).
    puts_applied: Counter[int] = field(default_factory=Counter)
    recent_writes: deque[float] = field(default_factory=deque)
    recent_calls: deque[float] = field(default_factory=deque)
    next_token_id: itertools.count[int] = field(default_factory=lambda: itertools.count(900001))
    rng: random.Random = field(default_factory=lambda: random.Random(7))


STATE = web.AppKey("sandbox_state", SandboxState)
#: The invoice a call is about, for the call log (a typed key: aiohttp warns on text keys).
INVOICE_ID = web.RequestKey("invoice_id", int)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _error(status: int, prop: str, message: str) -> web.Response:
    return web.json_response(
        {
            "Message": f"{prop}: {message}",
            "Value": None,
            "Errors": [{"AttemptedValue": None, "Message": message, "PropertyName": prop}],
            "WasSuccessful": False,
        },
        status=status,
    )


def _write_ok(entity: str, record_id: int, verb: str) -> web.Response:
    return web.json_response(
        {
            "Status": 200,
            "Message": f"{entity} was successfully {verb}.",
            "Value": {"Id": record_id},
            "OpenInDialog": False,
            "OpenInWindow": False,
            "RedirectURL": None,
            "JavaScript": None,
            "UpdatedOn": now_iso(),
            "UpdatedBy": "api@sandbox.example",
            "Errors": None,
            "WasSuccessful": True,
        }
    )


def _page(records: list[dict[str, Any]], request: web.Request) -> web.Response:
    page = max(int(request.query.get("page", "1")), 1)
    size = max(min(int(request.query.get("size", "25")), 1000), 1)
    chunk = records[(page - 1) * size : page * size]
    total_pages = max((len(records) + size - 1) // size, 1)
    return web.json_response(
        {
            "Records": chunk,
            "CurrentPageSize": size,
            "CurrentPage": page,
            "CurrentOrderField": "Id",
            "CurrentSortDirection": 1,
            "FirstItem": (page - 1) * size + 1 if chunk else 0,
            "LastItem": (page - 1) * size + len(chunk),
            "HasNextPage": page < total_pages,
            "HasPreviousPage": page > 1,
            "PageNumber": page,
            "PageSize": size,
            "TotalItems": len(records),
            "TotalPages": total_pages,
        }
    )


# -- middleware: auth, faults, throttling, call log ---------------------------------


@web.middleware
async def api_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.path.startswith(CONTROLS):
        return await _control(request, handler)
    if not request.path.startswith("/api/"):
        return await handler(request)
    state = request.app[STATE]
    write = request.method in ("POST", "PUT", "DELETE") and request.path != "/api/token"
    response = await _guarded(request, handler, state, write)
    if request.path != "/api/token":
        state.calls.append(
            Call(
                request.method,
                request.path,
                response.status,
                time.time(),
                write,
                request.get(INVOICE_ID),
            )
        )
    return response


#: Where the sandbox's own controls are (``payhooks dev``'s banner, the README's table).
CONTROLS = "/_sandbox/"


async def _control(request: web.Request, handler: Handler) -> web.StreamResponse:
    """A control given a body it cannot use says which field, with a 400: not a 500 and
    a traceback in the dev terminal."""
    try:
        return await handler(request)
    except KeyError as exc:
        reason = f"missing field {exc.args[0]!r}" if exc.args else "a field is missing"
    except (ValueError, TypeError, ArithmeticError) as exc:
        # json.JSONDecodeError is a ValueError; Decimal("1,00") an InvalidOperation.
        reason = f"{exc.__class__.__name__}: {str(exc)[:200] or 'a value it cannot use'}"
    return web.json_response({"error": "bad_control_request", "reason": reason}, status=400)


async def _guarded(
    request: web.Request, handler: Handler, state: SandboxState, write: bool
) -> web.StreamResponse:
    if request.path != "/api/token":
        bearer = request.headers.get("Authorization", "")
        expires = state.access_tokens.get(bearer.removeprefix("Bearer "), 0.0)
        if not bearer.startswith("Bearer ") or expires < time.time():
            return web.Response(status=401, text="Authorization has been denied for this request.")
    now = time.monotonic()
    throttled = _throttle(state, now, write)
    if throttled is not None:
        return throttled
    fault = _take_fault(state, request)
    if fault is not None and fault.status == 200:
        return await _slow(fault, handler, request)  # slow, but it works
    if fault is not None:
        if fault.after_apply:
            await handler(request)
        if fault.delay:
            await asyncio.sleep(fault.delay)
        if fault.status == 0 and request.transport is not None:
            request.transport.abort()  # a dropped connection, no answer at all
            return web.Response(status=500)
        headers = {"Retry-After": str(fault.retry_after)} if fault.retry_after is not None else {}
        body = fault.body if fault.body is not None else {"Message": "An error has occurred."}
        return web.json_response(body, status=fault.status, headers=headers)
    if state.fail_rate and state.rng.random() < state.fail_rate:
        roll = state.rng.random()
        if write and roll < 0.3:
            # The worst kind: the write lands, the answer says it failed.
            await handler(request)
            return web.json_response({"Message": "An error has occurred."}, status=502)
        if roll < 0.65:
            return web.json_response({"Message": "An error has occurred."}, status=503)
        return web.Response(status=429, headers={"Retry-After": "1"}, text="Wait 1 seconds")
    return await handler(request)


async def _slow(fault: Fault, handler: Handler, request: web.Request) -> web.StreamResponse:
    if fault.lands_late:
        await request.read()  # kept by aiohttp for the handler, whoever still waits
        return await asyncio.shield(_after(fault.delay, handler, request))
    return await _after(fault.delay, handler, request)


async def _after(delay: float, handler: Handler, request: web.Request) -> web.StreamResponse:
    await asyncio.sleep(delay)
    return await handler(request)


def _throttle(state: SandboxState, now: float, write: bool) -> web.Response | None:
    for window, limit, applies in (
        (state.recent_calls, state.calls_per_minute, True),
        (state.recent_writes, state.writes_per_minute, write),
    ):
        if not applies:
            continue
        while window and window[0] < now - 60:
            window.popleft()
        if len(window) >= limit:
            wait = max(int(window[0] + 60 - now) + 1, 1)
            return web.Response(
                status=429, headers={"Retry-After": str(wait)}, text=f"Wait {wait} seconds"
            )
    state.recent_calls.append(now)
    if write:
        state.recent_writes.append(now)
    return None


def _take_fault(state: SandboxState, request: web.Request) -> Fault | None:
    for fault in state.faults:
        if fault.method == request.method and request.path.startswith(fault.path):
            fault.times -= 1
            if fault.times <= 0:
                state.faults.remove(fault)
            return fault
    return None


# -- the API ------------------------------------------------------------------------


async def token(request: web.Request) -> web.Response:
    state = request.app[STATE]
    if request.content_type != "application/x-www-form-urlencoded":
        return web.json_response({"error": "unsupported_grant_type"}, status=400)
    form = await request.post()
    grant = form.get("grant_type")
    if grant == "password":
        if form.get("username") != state.username or form.get("password") != state.password:
            return web.json_response(
                {
                    "error": "invalid_grant",
                    "error_description": "The user name or password is incorrect.",
                },
                status=400,
            )
    elif grant == "refresh_token":
        presented = str(form.get("refresh_token", ""))
        if presented not in state.refresh_tokens:
            return web.json_response(
                {"error": "invalid_grant", "error_description": "Invalid refresh token."},
                status=400,
            )
        state.refresh_tokens.discard(presented)  # refresh tokens rotate
    else:
        return web.json_response({"error": "unsupported_grant_type"}, status=400)
    access, refresh = secrets.token_urlsafe(24), secrets.token_urlsafe(12)
    state.access_tokens[access] = time.time() + state.token_lifetime_seconds
    state.refresh_tokens.add(refresh)
    state.grants += 1
    return web.json_response(
        {
            "access_token": access,
            "token_type": "bearer",
            "expires_in": state.token_lifetime_seconds,
            "refresh_token": refresh,
        }
    )


async def get_invoice(request: web.Request) -> web.Response:
    request[INVOICE_ID] = int(request.match_info["id"])
    record = request.app[STATE].invoices.get(request[INVOICE_ID])
    if record is None:
        return web.json_response("Not found", status=404)
    return web.json_response(record)


async def search_invoices(request: web.Request) -> web.Response:
    state = request.app[STATE]
    records = list(state.invoices.values())
    for name in ("InvoiceNumber", "PaymentReference"):
        wanted = request.query.get(f"CoworkerInvoice_{name}")
        if wanted is not None:
            records = [r for r in records if wanted.lower() in str(r.get(name) or "").lower()]
    listing = [{k: v for k, v in r.items() if k not in NOT_IN_LISTING} for r in records]
    return _page(listing, request)


async def put_invoice(request: web.Request) -> web.Response:
    state = request.app[STATE]
    try:
        body = await request.json()
    except ValueError:
        return _error(400, "Body", "is not valid JSON")
    if not isinstance(body, dict):
        return _error(400, "Body", "is not a JSON object")
    for name in REQUIRED_ON_PUT:
        if body.get(name) in (None, ""):
            return _error(400, name, "is a required field")
    current = state.invoices.get(body["Id"]) if isinstance(body["Id"], int) else None
    request[INVOICE_ID] = body["Id"]
    if current is None:
        return web.json_response("Not found", status=404)
    updated = {k: v for k, v in current.items() if k in READ_ONLY}
    writable = (set(current) | set(body)) - READ_ONLY
    for name in writable:
        # PUT replaces the record: a writable field that is left out is cleared.
        updated[name] = body.get(name)
    updated["Id"] = current["Id"]
    if updated.get("PaidOn") and not current.get("PaidOn"):
        updated["Paid"] = True
        updated["PaidAmount"] = current.get("TotalAmount")
    updated["UpdatedOn"] = now_iso()
    state.invoices[current["Id"]] = updated
    state.puts_applied[current["Id"]] += 1
    return _write_ok("CoworkerInvoice", current["Id"], "updated")


async def search_tokens(request: web.Request) -> web.Response:
    state = request.app[STATE]
    records = list(state.tokens.values())
    invoice = request.query.get("CoworkerInvoicePaymentToken_CoworkerInvoice")
    if invoice is not None:
        records = [r for r in records if str(r["CoworkerInvoiceId"]) == invoice]
    wanted = request.query.get("CoworkerInvoicePaymentToken_Token")
    if wanted is not None:
        records = [r for r in records if wanted.lower() in str(r.get("Token") or "").lower()]
    # Documented: the listing does not populate RegularPaymentProvider.
    listing = [{k: v for k, v in r.items() if k != "RegularPaymentProvider"} for r in records]
    return _page(listing, request)


async def get_token(request: web.Request) -> web.Response:
    record = request.app[STATE].tokens.get(int(request.match_info["id"]))
    if record is None:
        return web.json_response("Not found", status=404)
    return web.json_response(record)


async def create_token(request: web.Request) -> web.Response:
    state = request.app[STATE]
    try:
        body = await request.json()
    except ValueError:
        return _error(400, "Body", "is not valid JSON")
    invoice_id = body.get("CoworkerInvoiceId") if isinstance(body, dict) else None
    if not isinstance(invoice_id, int):
        return _error(400, "CoworkerInvoiceId", "is a required field")
    if invoice_id not in state.invoices:
        return _error(400, "CoworkerInvoiceId", "does not reference an existing invoice")
    provider = body.get("RegularPaymentProvider")
    if provider is not None and provider not in PROVIDERS:
        return _error(400, "RegularPaymentProvider", "is not a valid value")
    token_id = next(state.next_token_id)
    state.tokens[token_id] = {
        "CoworkerInvoiceId": invoice_id,
        "RegularPaymentProvider": provider,
        "Token": body.get("Token"),
        "Notes": body.get("Notes"),
        "Id": token_id,
        "UpdatedOn": now_iso(),
        "CreatedOn": now_iso(),
        "UniqueId": str(uuid.uuid4()),
        "UpdatedBy": state.username,
        "IsNew": False,
        "SystemId": None,
    }
    return _write_ok("CoworkerInvoicePaymentToken", token_id, "created")


# -- control ------------------------------------------------------------------------


async def control_state(request: web.Request) -> web.Response:
    state = request.app[STATE]
    return web.json_response(
        {
            "invoices": list(state.invoices.values()),
            "tokens": list(state.tokens.values()),
            "calls": [vars(c) for c in state.calls],
            "grants": state.grants,
        }
    )


async def control_invoice_summary(request: web.Request) -> web.Response:
    """Each invoice's money, PaidOn and tokens: JSON, or a text table with ``?summary``."""
    from payhooks.devtools.sandbox import summary

    rows = summary.invoices(request.app[STATE])
    if "summary" in request.query:
        return web.Response(text=summary.as_text(rows))
    return web.json_response(rows)


async def control_invoices(request: web.Request) -> web.Response:
    """Create or replace invoices: one record or a list, any CoworkerInvoice fields.

    Without ``Id`` the next free one is taken; the answer names the Ids, so
    ``curl -X POST …/_sandbox/invoices -d '{"TotalAmount": 75.0}'`` is all a try-out needs.
    """
    state = request.app[STATE]
    body = await request.json()  # whatever the content type (curl -d sends a form type)
    ids = []
    for item in body if isinstance(body, list) else [body]:
        invoice_id = int(item.get("Id") or max(state.invoices, default=0) + 1)
        state.invoices[invoice_id] = invoice_record(invoice_id, **{**item, "Id": invoice_id})
        ids.append(invoice_id)
    return web.json_response({"ok": True, "ids": ids})


async def control_faults(request: web.Request) -> web.Response:
    body = await request.json()
    request.app[STATE].faults.append(Fault(**body))
    return web.json_response({"ok": True})


async def control_config(request: web.Request) -> web.Response:
    state = request.app[STATE]
    for name, value in (await request.json()).items():
        if name not in (
            "fail_rate",
            "writes_per_minute",
            "calls_per_minute",
            "token_lifetime_seconds",
        ):
            return web.json_response({"error": f"unknown setting {name}"}, status=400)
        setattr(state, name, value)
    return web.json_response({"ok": True})


async def control_revoke(request: web.Request) -> web.Response:
    request.app[STATE].access_tokens.clear()
    return web.json_response({"ok": True})


async def control_reset_calls(request: web.Request) -> web.Response:
    state = request.app[STATE]
    state.calls.clear()
    state.grants = 0
    return web.json_response({"ok": True})


def create_sandbox_app(state: SandboxState | None = None) -> web.Application:
    app = web.Application(middlewares=[api_middleware])
    app[STATE] = state or SandboxState()
    app.router.add_post("/api/token", token)
    app.router.add_get(INVOICES, search_invoices)
    app.router.add_get(INVOICES + "/{id:\\d+}", get_invoice)
    app.router.add_put(INVOICES, put_invoice)
    app.router.add_get(TOKENS, search_tokens)
    app.router.add_get(TOKENS + "/{id:\\d+}", get_token)
    app.router.add_post(TOKENS, create_token)
    app.router.add_get("/_sandbox/state", control_state)
    app.router.add_get("/_sandbox/invoices", control_invoice_summary)
    app.router.add_post("/_sandbox/invoices", control_invoices)
    app.router.add_post("/_sandbox/faults", control_faults)
    app.router.add_post("/_sandbox/config", control_config)
    app.router.add_post("/_sandbox/revoke-tokens", control_revoke)
    app.router.add_post("/_sandbox/reset-calls", control_reset_calls)
    return app
