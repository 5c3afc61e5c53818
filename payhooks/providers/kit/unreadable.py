"""Why input that passed its checks could not be read, in words safe to log and keep.

A parser's or the standard library's message quotes the input (a card number, a name), so
only our own refusals keep their message; anything else is named by its class and by the
innermost line of our code it came through, which is where a fix would go.
"""

from __future__ import annotations

import traceback
from pathlib import Path

from payhooks.providers.kit.receiver_errors import WebhookError

_OUR_CODE = ("service", "payhooks", "workers")


def reason_of(exc: BaseException) -> str:
    if isinstance(exc, WebhookError):
        cause = f" ({reason_of(exc.__cause__)})" if exc.__cause__ is not None else ""
        return f"{exc.code}: {exc.message}{cause}"
    where = ""
    for frame in reversed(traceback.extract_tb(exc.__traceback__)):
        parts = Path(frame.filename).parts
        ours = [n for n, part in enumerate(parts) if part in _OUR_CODE]
        if ours:
            where = f" in {'/'.join(parts[ours[-1] :])}:{frame.lineno} ({frame.name})"
            break
    return f"{exc.__class__.__name__}{where}"
