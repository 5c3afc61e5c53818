"""Reading a webhook's body within a deadline and a memory budget.

Providers send a few KB in one go. A sender that trickles a large body would otherwise
hold a connection and up to 1 MiB of memory for as long as it likes, and a few hundred
such senders hold hundreds of MB. So: the whole body must arrive within ``body_seconds``
(408 otherwise), bytes beyond a request's first ``free_bytes`` draw on one budget shared
by every pending body (503 when it is spent, decided from Content-Length before anything
is read where there is one), and the memory is handed back to the system once the budget
is idle again. Small bodies never wait on the budget, so webhooks keep being answered.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import logging
from collections.abc import Callable
from dataclasses import dataclass

from aiohttp import web

from payhooks.providers.kit.receiver_errors import BodyTooLarge, WebhookError

log = logging.getLogger("payhooks.intake")

MAX_BODY_BYTES = 1024 * 1024


@dataclass(frozen=True, slots=True)
class ReadLimits:
    #: From a request's first byte to the end of its headers.
    header_seconds: float = 10.0
    #: From the end of the headers to the end of the body.
    body_seconds: float = 10.0
    #: What all bodies being received may hold beyond their first ``free_bytes``.
    pending_bytes: int = 16 * 1024 * 1024
    free_bytes: int = 64 * 1024
    max_body_bytes: int = MAX_BODY_BYTES


class SlowBody(WebhookError):
    status = 408
    code = "body_too_slow"


class ReceiverBusy(WebhookError):
    """Too many large bodies are arriving at once: the provider retries later."""

    status = 503
    code = "busy"


def _malloc_trim() -> Callable[[int], int] | None:
    """glibc keeps freed heap pages; malloc_trim gives them back (None elsewhere)."""
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    trim = getattr(ctypes.CDLL(name), "malloc_trim", None)
    if trim is None:
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim  # type: ignore[no-any-return]


class PendingBodies:
    """The budget: bytes that bodies being received may hold beyond their free share."""

    #: Trim only after the budget held this much: a trim costs a few milliseconds.
    TRIM_AFTER_BYTES = 4 * 1024 * 1024

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.held = 0
        self._peak = 0
        self._trim = _malloc_trim()

    def reserve(self, size: int) -> bool:
        if size <= 0:
            return True
        if self.held + size > self.limit:
            return False
        self.held += size
        self._peak = max(self._peak, self.held)
        return True

    def release(self, size: int) -> None:
        if size <= 0:
            return
        self.held -= size
        if self.held == 0 and self._peak >= self.TRIM_AFTER_BYTES and self._trim is not None:
            # A moment later, once the last bodies' requests have let go of them too.
            asyncio.get_running_loop().call_later(1.0, self._trim_if_idle)

    def _trim_if_idle(self) -> None:
        if self.held == 0 and self._peak and self._trim is not None:
            self._peak = 0
            self._trim(0)


async def read_body(request: web.Request, limits: ReadLimits, budget: PendingBodies) -> bytes:
    declared = request.content_length
    if declared is not None and declared > limits.max_body_bytes:
        raise _closing(BodyTooLarge("body over 1 MiB"))
    content = request.content
    if content.is_eof():  # the whole body came with the headers: the usual webhook
        # All of it is buffered already: taken in one call (request.read() loops over
        # readany and copies it twice), held to the same limit (a chunked body declares
        # no length).
        body = content.read_nowait()
        if len(body) > limits.max_body_bytes:
            raise BodyTooLarge("body over 1 MiB")
        return body
    reserved = max((declared or 0) - limits.free_bytes, 0)
    if not budget.reserve(reserved):
        raise _closing(ReceiverBusy("too many large bodies arriving at once; retry later"))
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(limits.body_seconds):
            while chunk := await content.readany():
                size += len(chunk)
                if size > limits.max_body_bytes:
                    raise _closing(BodyTooLarge("body over 1 MiB"))
                # A body without Content-Length (chunked) draws on the budget as it comes.
                extra = size - limits.free_bytes - reserved
                if extra > 0:
                    if not budget.reserve(extra):
                        raise _closing(
                            ReceiverBusy("too many large bodies arriving at once; retry later")
                        )
                    reserved += extra
                chunks.append(chunk)
    except TimeoutError:
        log.warning(
            "http.body_too_slow",
            # The route, not the path: a signature-less provider's path holds our token.
            extra={"route": _route(request), "received": size, "declared": declared},
        )
        raise _closing(
            SlowBody(f"the body did not arrive within {limits.body_seconds:g} s")
        ) from None
    finally:
        budget.release(reserved)
    return b"".join(chunks)


def _closing(error: WebhookError) -> WebhookError:
    """The rest of the body is not read: the connection cannot carry another request."""
    error.close_connection = True
    return error


def _route(request: web.Request) -> str:
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "(no route)"
