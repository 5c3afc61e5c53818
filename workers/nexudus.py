"""A thin, synchronous Nexudus REST client (RQ workers are synchronous).

One private ``_request`` does authentication, rate limiting and status handling:
- 401: re-authenticate once and retry; a second 401 is permanent (credentials or roles).
- 409 and 429: throttling (409 is Nexudus's legacy throttle code, never a conflict).
  Short ``Retry-After`` waits are honoured in place; longer ones go back to RQ.
- 5xx, timeouts and connection errors: transient, retried by the job (workers/jobs.py).
- 400 and other 4xx: permanent, with Nexudus's ``Errors`` list in the reason.
Writes also check ``WasSuccessful``, since Nexudus can answer 200 to a failed write.

Every outcome feeds the shared breaker (workers/breaker.py); while it is open no call is
made. Slots can be reserved ahead (``reserve``) so that a GET and the PUT built from it
are sent back to back.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Mapping
from typing import Any

import httpx

from payhooks.storage.worker_metrics import WorkerMetrics
from workers.breaker import Breaker
from workers.errors import (
    NexudusError,
    NexudusPermanentError,
    NexudusThrottled,
    NexudusTransientError,
    NexudusUnavailable,
    RecordStale,
)
from workers.nexudus_auth import NexudusAuth
from workers.ratelimit import RateLimiter, Slot

log = logging.getLogger("payhooks.nexudus")

INVOICES = "/api/billing/coworkerinvoices"
PAYMENT_TOKENS = "/api/billing/coworkerinvoicepaymenttokens"

# Throttle waits up to this long are slept in place; longer ones are left to RQ.
MAX_INLINE_THROTTLE_WAIT = 30.0
INLINE_THROTTLE_RETRIES = 3
_WAIT_IN_BODY = re.compile(r"Wait ([\d.]+) seconds")

Record = dict[str, Any]

#: The fields the PUT documentation marks required.
INVOICE_REQUIRED_ON_PUT = (
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


class NexudusClient:
    def __init__(
        self,
        http: httpx.Client,
        auth: NexudusAuth,
        limiter: RateLimiter,
        *,
        breaker: Breaker | None = None,
        metrics: WorkerMetrics | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._http = http
        self._auth = auth
        self._limiter = limiter
        self._breaker = breaker
        self._metrics = metrics
        self._sleep = sleep
        self._reserved: list[Slot] = []

    # -- call budget ------------------------------------------------------------

    def reserve(self, *writes: bool) -> None:
        """Take the slots of the next calls now (True for a write), in their order.

        The calls then run back to back. A reserved slot left unused is given back by
        ``release_reserved``; one used later than the limiter's margin is given back and
        a fresh one taken, since Nexudus would count it late.
        """
        if self._limiter.can_reserve(writes):
            self.release_reserved()
            self._reserved = self._limiter.reserve(list(writes))

    def release_reserved(self) -> None:
        if self._reserved:
            unused, self._reserved = self._reserved, []
            self._limiter.release(unused)

    def _take_slot(self, write: bool) -> None:
        for index, slot in enumerate(self._reserved):
            if slot.write != write:
                continue
            del self._reserved[index]
            if time.monotonic() - slot.at <= self._limiter.margin_seconds:
                self._limiter.wait_for(slot)
                return
            self._limiter.release([slot])
            break
        self._limiter.acquire(write=write)

    # -- invoices ---------------------------------------------------------------

    def get_invoice(self, invoice_id: int) -> Record | None:
        """The full record, or None when there is no such invoice."""
        response = self._request("GET", f"{INVOICES}/{invoice_id}", allow_404=True)
        if response.status_code == 404:
            return None
        record = _object(response, "GET", INVOICES)
        if record.get("Id") != invoice_id:
            raise NexudusTransientError(
                f"asked for invoice {invoice_id}, got a record with Id {record.get('Id')!r}",
                method="GET",
                path=INVOICES,
                status=response.status_code,
            )
        return record

    def search_invoices(self, filters: Mapping[str, str]) -> list[Record]:
        """Listing records (partial: never a base for a PUT)."""
        return self._search(INVOICES, filters)

    def put_invoice(self, record: Record, *, fresh_until: float | None = None) -> None:
        """PUT replaces the whole record: ``record`` must come from ``get_invoice``, just
        before. A throttled PUT is not sent again here (the record would be stale by
        then): NexudusThrottled goes to the caller, which reads the record afresh.

        A record missing a field Nexudus requires would be refused at best and clear
        fields at worst, so it is not sent; nor is one whose slot and bearer token came
        after ``fresh_until`` (monotonic): RecordStale, read it again.
        """
        missing = [name for name in INVOICE_REQUIRED_ON_PUT if record.get(name) in (None, "")]
        if missing:
            raise NexudusPermanentError(
                f"refusing to PUT an incomplete invoice record (no {', '.join(missing)})",
                method="PUT",
                path=INVOICES,
                status=None,
            )
        response = self._request(
            "PUT", INVOICES, json=record, write=True, resend=False, fresh_until=fresh_until
        )
        _check_write(response, "PUT", INVOICES)

    # -- payment tokens ---------------------------------------------------------

    def search_payment_tokens(self, invoice_id: int, token: str) -> list[Record]:
        return self._search(
            PAYMENT_TOKENS,
            {
                "CoworkerInvoicePaymentToken_CoworkerInvoice": str(invoice_id),
                "CoworkerInvoicePaymentToken_Token": token,
            },
        )

    def create_payment_token(
        self, *, invoice_id: int, provider: int, token: str, notes: str
    ) -> int:
        response = self._request(
            "POST",
            PAYMENT_TOKENS,
            json={
                "CoworkerInvoiceId": invoice_id,
                "RegularPaymentProvider": provider,
                "Token": token,
                "Notes": notes,
            },
            write=True,
        )
        body = _check_write(response, "POST", PAYMENT_TOKENS)
        value = body.get("Value")
        if isinstance(value, dict) and isinstance(value.get("Id"), int):
            return int(value["Id"])
        raise NexudusPermanentError(
            "created, but the response carries no Value.Id",
            method="POST",
            path=PAYMENT_TOKENS,
            status=response.status_code,
        )

    # -- plumbing ---------------------------------------------------------------

    def _search(self, path: str, filters: Mapping[str, str]) -> list[Record]:
        records: list[Record] = []
        page = 1
        while True:
            params = {**filters, "page": str(page), "size": "100"}
            body = _object(self._request("GET", path, params=params), "GET", path)
            found = body.get("Records")
            if isinstance(found, list):
                records.extend(r for r in found if isinstance(r, dict))
            if not body.get("HasNextPage") or page >= 50:
                return records
            page += 1

    def _request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        json: Any = None,
        write: bool = False,
        allow_404: bool = False,
        resend: bool = True,
        fresh_until: float | None = None,
    ) -> httpx.Response:
        reauthenticated = False
        throttled = 0
        while True:
            self._check_breaker()
            asked = time.monotonic()
            self._take_slot(write)
            slotted = time.monotonic()
            token = self._auth.token()
            if fresh_until is not None and time.monotonic() > fresh_until:
                raise RecordStale(
                    _stale_reason(slotted - asked, time.monotonic() - slotted, reauthenticated),
                    unauthorised=reauthenticated,
                )
            response = self._send(method, path, params, json, token, write=write)
            status = response.status_code
            if status == 401 and not reauthenticated:
                reauthenticated = True
                self._auth.invalidate(token)
                continue
            if status in (409, 429):
                wait = _retry_after(response)
                if (
                    resend
                    and wait <= MAX_INLINE_THROTTLE_WAIT
                    and throttled < INLINE_THROTTLE_RETRIES
                ):
                    throttled += 1
                    log.info("nexudus.throttled", extra={"path": path, "wait_s": wait})
                    if self._metrics is not None:
                        self._metrics.throttle_wait(wait)
                    self._sleep(wait)
                    continue
                raise NexudusThrottled(
                    "throttled", method=method, path=path, status=status, retry_after=wait
                )
            if status >= 500:
                raise NexudusTransientError("server error", method=method, path=path, status=status)
            if status == 401:
                raise NexudusPermanentError(
                    "unauthorised after re-authenticating; check that NEXUDUS_USERNAME holds "
                    "the CoworkerInvoice and CoworkerInvoicePaymentToken roles",
                    method=method,
                    path=path,
                    status=status,
                )
            if status == 404 and allow_404:
                return response
            if status >= 400:
                message, errors = _error_details(response)
                if status == 403:
                    message += f" (NEXUDUS_USERNAME may lack the role to {method} {path})"
                raise NexudusPermanentError(
                    message, method=method, path=path, status=status, errors=errors
                )
            return response

    def _check_breaker(self) -> None:
        if self._breaker is None:
            return
        wait, probing = self._breaker.wait_seconds()
        if probing:
            # The probe is a call of its own, about no invoice: one broken invoice must
            # not keep the breaker open for everyone (nor its job waiting uncounted).
            try:
                self._send("GET", INVOICES, {"page": "1", "size": "1"}, None, self._auth.token())
            except NexudusError:
                pass
            wait, probing = self._breaker.wait_seconds()
        if wait > 0 or probing:
            raise NexudusUnavailable(
                f"most recent Nexudus calls failed; calls paused for {wait:.0f} s "
                "(not counted as an attempt)",
                retry_after=wait,
            )

    def _record_outcome(self, status: int | str) -> None:
        if self._breaker is None:
            return
        ok = isinstance(status, int) and status < 500
        if self._breaker.record(ok=ok) == "opened":
            log.warning("nexudus.breaker_opened", extra={"status": status})

    def _send(
        self, method: str, path: str, params: Any, json: Any, token: str, *, write: bool = False
    ) -> httpx.Response:
        started = time.perf_counter()
        status: int | str = "error"
        try:
            response = self._http.request(
                method,
                path,
                params=params,
                json=json,
                headers={"Authorization": f"Bearer {token}"},
            )
            status = response.status_code
            if status >= 500 and write:
                raise _landed(
                    NexudusTransientError("server error", method=method, path=path, status=status),
                    self._http,
                )
            return response
        except httpx.TimeoutException:
            status = "timeout"
            error = NexudusTransientError("timed out", method=method, path=path, status=None)
            raise (_landed(error, self._http) if write else error) from None
        except httpx.TransportError as exc:
            error = NexudusTransientError(
                f"connection failed ({exc.__class__.__name__})",
                method=method,
                path=path,
                status=None,
            )
            # A connection never made sent nothing; any other failure may have.
            sent = write and not isinstance(exc, httpx.ConnectError)
            raise (_landed(error, self._http) if sent else error) from None
        finally:
            self._record_outcome(status)
            if self._metrics is not None:
                self._metrics.nexudus_call(method, path, status, time.perf_counter() - started)


def _landed(error: NexudusTransientError, http: httpx.Client) -> NexudusTransientError:
    """Mark a write that may still land: the job goes back to RQ, whose backoff
    (JOB_RETRY_BASE_SECONDS) gives it time to land before the search."""
    del http
    error.write_may_have_landed = True
    return error


def _stale_reason(slot_wait: float, token_wait: float, reauthenticated: bool) -> str:
    """Why a record to PUT grew stale before its call could go: for the job's reason."""
    if reauthenticated:
        return (
            f"Nexudus answered the PUT 401 and a new bearer token took {token_wait:.1f} s; "
            "if this repeats, NEXUDUS_USERNAME lacks the role to edit CoworkerInvoice records"
        )
    if slot_wait >= token_wait:
        return (
            f"the PUT waited {slot_wait:.1f} s for a write slot: the write window is full "
            "(NEXUDUS_WRITES_PER_MINUTE, NEXUDUS_MIN_INTERVAL_MS, other workers' writes)"
        )
    return f"the PUT waited {token_wait:.1f} s for a Nexudus bearer token (POST /api/token)"


def _retry_after(response: httpx.Response) -> float:
    header = response.headers.get("Retry-After", "")
    try:
        return max(float(header), 0.0)
    except ValueError:
        pass
    match = _WAIT_IN_BODY.search(response.text)
    if match:
        return float(match.group(1)) + 0.25
    return 1.0


def _object(response: httpx.Response, method: str, path: str) -> Record:
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise NexudusTransientError(
            "response is not a JSON object", method=method, path=path, status=response.status_code
        )
    return body


def _check_write(response: httpx.Response, method: str, path: str) -> Record:
    body = _object(response, method, path)
    if body.get("WasSuccessful") is not True:
        message, errors = _error_details(response)
        raise NexudusPermanentError(
            message, method=method, path=path, status=response.status_code, errors=errors
        )
    return body


def _error_details(response: httpx.Response) -> tuple[str, list[str]]:
    try:
        body = response.json()
    except ValueError:
        return (response.text[:200] or "no message"), []
    if not isinstance(body, dict):
        return str(body)[:200], []
    errors = []
    for item in body.get("Errors") or []:
        if isinstance(item, dict):
            errors.append(f"{item.get('PropertyName')}: {item.get('Message')}")
    return str(body.get("Message") or "request rejected"), errors
