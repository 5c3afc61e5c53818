"""The log handler writes a loop turn's lines at once, and nothing later than that turn."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import Iterator

import pytest

from payhooks.logs import JsonFormatter, LoopBatchedHandler


class CountingStream(io.StringIO):
    def __init__(self) -> None:
        super().__init__()
        self.writes = 0

    def write(self, text: str) -> int:
        self.writes += 1
        return super().write(text)


@pytest.fixture
def logged() -> Iterator[tuple[logging.Logger, CountingStream]]:
    stream = CountingStream()
    handler = LoopBatchedHandler(stream)
    handler.setFormatter(JsonFormatter())
    log = logging.getLogger("payhooks.test_logs")
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False
    try:
        yield log, stream
    finally:
        log.removeHandler(handler)


def events(stream: CountingStream) -> list[str]:
    return [json.loads(line)["event"] for line in stream.getvalue().splitlines()]


def test_a_turns_lines_are_written_together_at_its_end(
    logged: tuple[logging.Logger, CountingStream],
) -> None:
    log, stream = logged

    async def turn() -> list[str]:
        log.info("webhook.queued", extra={"event_id": "evt_1"})
        log.info("webhook.queued", extra={"event_id": "evt_2"})
        written_during_the_turn = events(stream)
        await asyncio.sleep(0)  # the turn ends
        return written_during_the_turn

    assert asyncio.run(turn()) == []
    assert events(stream) == ["webhook.queued", "webhook.queued"]
    assert stream.writes == 1


def test_errors_and_lines_outside_a_loop_are_written_at_once(
    logged: tuple[logging.Logger, CountingStream],
) -> None:
    log, stream = logged

    async def turn() -> list[str]:
        log.info("webhook.queued")
        log.error("webhook.unprocessed")
        return events(stream)

    # The error takes the turn's earlier lines with it, in order.
    assert asyncio.run(turn()) == ["webhook.queued", "webhook.unprocessed"]
    log.info("billing.applied")
    assert events(stream)[-1] == "billing.applied"


def test_a_line_holds_every_field_given_and_none_of_the_records_own(
    logged: tuple[logging.Logger, CountingStream],
) -> None:
    # The formatter reads a record's fields from after the attributes every record has.
    log, stream = logged
    fields = {"provider": "stripe", "event_id": "evt_1", "job_id": "stripe-evt_1-ab", "n": 2}
    log.info("webhook.queued", extra=fields)
    log.warning("webhook.rejected", extra={"provider": "stripe", "reason": "no signature"})
    log.handlers[0].handle(logging.makeLogRecord({"msg": "made", "x": 1, "_private": 2}))
    first, second, made = [json.loads(line) for line in stream.getvalue().splitlines()]
    common = {"ts", "level", "logger", "event"}
    assert first.keys() == common | fields.keys()
    assert {k: first[k] for k in fields} == fields
    assert second.keys() == common | {"provider", "reason"}
    assert made.keys() == common | {"x"}
