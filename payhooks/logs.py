"""Logging: one JSON object per line in production, readable text in `payhooks dev`.

Call sites log a dotted event name and keyword fields:
``log.info("webhook.queued", extra={"provider": "stripe", "event_id": ...})``.
Bodies, signatures, secrets and bearer tokens are never passed to a logger.
"""

from __future__ import annotations

import logging
import sys
import time
from datetime import datetime

import orjson

_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}


def _fields(record: logging.LogRecord) -> dict[str, object]:
    attributes = record.__dict__
    return {k: attributes[k] for k in attributes.keys() - _STANDARD if not k.startswith("_")}


def _utc_iso(created: float) -> str:
    # strftime over gmtime is several times cheaper than datetime.isoformat, and the
    # receiver writes a line per webhook.
    millis = int(created % 1 * 1000)
    return f"{time.strftime('%Y-%m-%dT%H:%M:%S', time.gmtime(created))}.{millis:03d}Z"


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, object] = {
            "ts": _utc_iso(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
        }
        data.update(_fields(record))
        if record.exc_info:
            data["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(data, default=str).decode()


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        fields = " ".join(f"{k}={v}" for k, v in _fields(record).items())
        stamp = datetime.fromtimestamp(record.created).strftime("%H:%M:%S")
        line = f"{stamp} {record.levelname:<7} {record.name}: {record.getMessage()} {fields}"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line.rstrip()


def configure(log_format: str, level: str) -> None:
    # What no payhooks line uses, and what costs the receiver on every webhook: the
    # caller's file and line, thread and process names (the logging docs' "Optimization").
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # aiohttp's access log repeats what webhook.* lines already say, at a cost per request.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
