"""The log handler writes a loop turn's lines at once, and nothing later than that turn."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import time
from collections.abc import Callable, Iterator

import pytest

from payhooks import logs
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


@pytest.fixture
def alone() -> tuple[logging.Logger, CountingStream]:
    """A logger whose only handler is the JSON one, as `payhooks serve` configures it (a
    logger of its own: pytest's capture handlers are on the loggers it knows)."""
    stream = CountingStream()
    handler = LoopBatchedHandler(stream)
    handler.setFormatter(JsonFormatter())
    log = logging.Logger("payhooks.webhook")  # noqa: LOG001 (unknown to pytest)
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    return log, stream


def test_a_line_per_event_is_the_line_logging_writes(
    alone: tuple[logging.Logger, CountingStream],
) -> None:
    # info_line hands the JSON handler its line itself when that handler alone would see
    # it: the same keys, order and values as the formatter's line for the same record.
    log, stream = alone
    fields: dict[str, object] = {
        "provider": "stripe",
        "event_id": "evt_1",
        "event_type": "payment_intent.succeeded",
        "job_id": "stripe-evt_1-ab",
        "kind": "paid",
        "invoice": "invoice number 'INV-7'",
    }
    assert logs._json_handler_alone(log) is log.handlers[0]
    before = time.time()
    logs.info_line(log, "webhook.queued", fields)
    after = time.time()
    [fast] = stream.getvalue().splitlines()
    stamp = json.loads(fast)["ts"]
    assert logs.utc_text(before) <= stamp <= logs.utc_text(after)
    # The record logging makes for log.info(..., extra=fields), at the line's own time.
    record = log.makeRecord(log.name, logging.INFO, "", 0, "webhook.queued", (), None, extra=fields)
    seconds, _, millis = stamp.removesuffix("Z").partition(".")
    at = time.mktime(time.strptime(seconds, "%Y-%m-%dT%H:%M:%S")) - time.timezone
    record.created = at + int(millis) / 1000 + 0.0005
    assert log.handlers[0].format(record) == fast


def test_a_line_per_event_goes_through_logging_when_anything_else_would_see_it(
    alone: tuple[logging.Logger, CountingStream],
) -> None:
    log, stream = alone
    assert logs._json_handler_alone(log) is log.handlers[0]
    seen: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record)

    fields: dict[str, object] = {"provider": "stripe", "event_id": "evt_1"}
    json_handler = log.handlers[0]
    second_stream = CountingStream()
    second = LoopBatchedHandler(second_stream)
    second.setFormatter(JsonFormatter())
    # Another handler (a test's caplog, an operator's), a filter on the logger or the
    # handler, a text formatter: each must see the record as logging makes it.
    changes: list[tuple[Callable[[], None], Callable[[], None]]] = [
        (lambda: log.addHandler(Keep()), lambda: log.removeHandler(log.handlers[-1])),
        (lambda: log.addHandler(second), lambda: log.removeHandler(second)),
        (lambda: log.addFilter(_keep_all), lambda: log.removeFilter(_keep_all)),
        (lambda: json_handler.addFilter(_keep_all), lambda: json_handler.removeFilter(_keep_all)),
        (
            lambda: json_handler.setFormatter(logs.TextFormatter()),
            lambda: json_handler.setFormatter(logs.JsonFormatter()),
        ),
    ]
    for change, undo in changes:
        change()
        try:
            assert logs._json_handler_alone(log) is None
            logs.info_line(log, "webhook.queued", fields)
        finally:
            undo()
    assert [record.event_id for record in seen] == ["evt_1"]  # type: ignore[attr-defined]
    assert len(second_stream.getvalue().splitlines()) == 1
    assert len(stream.getvalue().splitlines()) == 5
    # Below the logger's level: nothing at all.
    quiet = logging.Logger("payhooks.webhook", logging.WARNING)  # noqa: LOG001
    quiet.addHandler(json_handler)
    logs.info_line(quiet, "webhook.queued", fields)
    assert len(stream.getvalue().splitlines()) == 5


def _keep_all(record: logging.LogRecord) -> bool:
    return True


@pytest.mark.parametrize("digits", [3, 6])
def test_utc_text_writes_the_usual_widths_as_any_other(digits: int) -> None:
    # 3 and 6 digits are written out (no nested format spec): the same text.
    for at in (0.0, 1796616963.0005, 1796616963.999999, 1796616963.123456789, 1e9 + 0.5):
        whole = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(int(at)))
        assert logs.utc_text(at, digits) == f"{whole}.{int(at % 1 * 10**digits):0{digits}d}Z"


@pytest.fixture
def restored_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    httpx_level = logging.getLogger("httpx").level
    try:
        yield
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
        logging.getLogger("httpx").setLevel(httpx_level)


@pytest.mark.usefixtures("restored_logging")
def test_provider_api_requests_are_not_a_line_each_unless_debugging() -> None:
    """`payhooks dev` polled EziDebit every 5 s and logged httpx's request line each time,
    and so does a worker for every provider lookup: the job's own line says what it did."""
    logs.configure("text", "INFO")
    assert not logging.getLogger("httpx").isEnabledFor(logging.INFO)
    assert logging.getLogger("httpx").isEnabledFor(logging.WARNING)
    logs.configure("text", "DEBUG")
    assert logging.getLogger("httpx").isEnabledFor(logging.INFO)


def test_a_worker_does_not_log_each_jobs_result_lifespan() -> None:
    from workers.worker_process import PaymentWorker

    assert PaymentWorker.log_result_lifespan is False
