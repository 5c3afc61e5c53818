"""Logging: one JSON object per line in production, readable text in `payhooks dev`.

Call sites log a dotted event name and keyword fields:
``log.info("webhook.queued", extra={"provider": "stripe", "event_id": ...})``.
Bodies, signatures, secrets and bearer tokens are never passed to a logger.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from datetime import datetime
from itertools import islice
from typing import Any

import orjson

_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}
#: How many attributes LogRecord.__init__ sets, first: a record's own fields (``extra``)
#: come after them.
_SET_BY_INIT = len(vars(logging.LogRecord("", 0, "", 0, "", (), None)))


def _fields(record: logging.LogRecord) -> dict[str, object]:
    # One pass over what follows the attributes every record has (the receiver logs a
    # line per event); still filtered, for anything a handler added (``message``).
    return {
        k: v
        for k, v in islice(record.__dict__.items(), _SET_BY_INIT, None)
        if k not in _STANDARD and not k.startswith("_")
    }


_second: list[Any] = [None, ""]


def utc_text(at: float, digits: int = 3) -> str:
    """``at`` as ``2026-12-06T21:30:35.945Z`` (``digits`` after the second: 3, or 6 as
    RQ writes its times). strftime over gmtime is several times cheaper than
    datetime.isoformat, and once a second cheaper still: the receiver stamps every event
    (its log line, its trail, its job)."""
    whole = int(at)
    if _second[0] != whole:
        _second[:] = [whole, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole))]
    # A nested format spec costs a third of the call: the usual widths are written out.
    if digits == 3:
        return f"{_second[1]}.{int(at % 1 * 1000):03d}Z"
    if digits == 6:
        return f"{_second[1]}.{int(at % 1 * 1000000):06d}Z"
    return f"{_second[1]}.{int(at % 1 * 10**digits):0{digits}d}Z"


_LEVELS = {n: logging.getLevelName(n).lower() for n in (10, 20, 30, 40, 50)}


def _head(created: float, levelno: int, levelname: str, name: str, event: str) -> dict[str, object]:
    """What every JSON line begins with, in this order; its fields follow."""
    return {
        "ts": utc_text(created),
        "level": _LEVELS.get(levelno) or levelname.lower(),
        "logger": name,
        "event": event,
    }


def _json_line(data: dict[str, object]) -> str:
    return orjson.dumps(data, default=str).decode()


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        data = _head(
            record.created, record.levelno, record.levelname, record.name, record.getMessage()
        )
        # _fields, inline (a line per event): no dict of its own to copy from.
        for k, v in islice(record.__dict__.items(), _SET_BY_INIT, None):
            if k not in _STANDARD and not k.startswith("_"):
                data[k] = v
        if record.exc_info:
            data["exc"] = self.formatException(record.exc_info)
        return _json_line(data)


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        fields = " ".join(f"{k}={v}" for k, v in _fields(record).items())
        stamp = datetime.fromtimestamp(record.created).strftime("%H:%M:%S")
        line = f"{stamp} {record.levelname:<7} {record.name}: {record.getMessage()} {fields}"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line.rstrip()


class LoopBatchedHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Lines logged within one turn of a running event loop are written together at the
    end of the turn: the receiver logs a line per event, and a write per line was a
    system call per event. Outside a loop (workers, commands), and for errors, each line
    is written at once, as StreamHandler writes it."""

    def __init__(self, stream: Any) -> None:
        super().__init__(stream)
        self._pending: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record)
        except Exception:  # noqa: BLE001 (logging's own policy: report, never raise)
            self.handleError(record)
            return
        self.emit_line(line, record.levelno)

    def emit_line(self, line: str, levelno: int) -> None:
        """A formatted line, written as ``emit`` writes a record's (under the lock)."""
        try:
            loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        if not self._pending and loop is not None and levelno < logging.ERROR:
            loop.call_soon(self.write_pending)
        self._pending.append(line)
        if loop is None or levelno >= logging.ERROR:
            self._write()

    def write_pending(self) -> None:
        with self.lock:  # type: ignore[union-attr]
            self._write()

    def _write(self) -> None:
        if not self._pending:
            return
        lines, self._pending = self._pending, []
        try:
            self.stream.write("\n".join(lines) + "\n")
            self.stream.flush()
        except Exception:  # noqa: BLE001
            self.handleError(logging.makeLogRecord({"msg": "log write failed"}))

    def flush(self) -> None:
        if self.lock is None:
            return
        with self.lock:
            self._write()
        super().flush()


def info_line(logger: logging.Logger, event: str, fields: dict[str, object]) -> None:
    """``logger.info(event, extra=fields)``, for a line per event (the receiver's): when the
    line would reach only the JSON handler ``configure`` sets up, that handler is handed
    the very line its formatter would write (``_head``, the fields, ``_json_line``) without
    the LogRecord, the handler lookup and the formatter's pass over the record, which cost
    most of the line; otherwise (text logs, a test's handler, a filter) through logging.
    ``fields`` must hold none of a LogRecord's own names (``extra`` refuses them)."""
    if not logger.isEnabledFor(logging.INFO):
        return
    handler = _json_handler_alone(logger)
    if handler is None:
        logger.info(event, extra=fields)
        return
    data = _head(time.time(), logging.INFO, "INFO", logger.name, event)
    data.update(fields)
    try:
        line = _json_line(data)
    except Exception:  # noqa: BLE001 (as emit: logging's policy is to report, never raise)
        logger.info(event, extra=fields)
        return
    with handler.lock:  # type: ignore[union-attr]
        handler.emit_line(line, logging.INFO)


def _json_handler_alone(logger: logging.Logger) -> LoopBatchedHandler | None:
    """The handler an INFO record of ``logger`` would reach, if it reaches exactly one, a
    LoopBatchedHandler with the JsonFormatter and no filter (Logger.callHandlers' walk);
    None if anything else could see or change the record."""
    if logger.filters:  # a logger's own filters apply, not its ancestors'
        return None
    found: LoopBatchedHandler | None = None
    current: logging.Logger | None = logger
    while current is not None:
        for handler in current.handlers:
            if (
                found is not None
                or type(handler) is not LoopBatchedHandler
                or type(handler.formatter) is not JsonFormatter
                or handler.filters
                or handler.level > logging.INFO
            ):
                return None
            found = handler
        current = current.parent if current.propagate else None
    return found


def configure(log_format: str, level: str) -> None:
    # What no payhooks line uses, and what costs the receiver on every webhook: the
    # caller's file and line, thread and process names (the logging docs' "Optimization").
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    handler = LoopBatchedHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # aiohttp's access log repeats what webhook.* lines already say, at a cost per request.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    # httpx's line per request (every provider lookup and poll, with its URL) says nothing
    # the job's and task's own lines do not; it is there when asked for with DEBUG.
    logging.getLogger("httpx").setLevel(logging.WARNING if root.level > logging.DEBUG else level)
