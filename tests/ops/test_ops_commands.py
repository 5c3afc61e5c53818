"""The ops commands as an operator types them: `payhooks failed …`, `trace`, `replay-event`,
`healthcheck`, with their text and --json output and exit codes."""

from __future__ import annotations

import itertools
import json
import subprocess
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from redis import Redis
from rq import Queue
from rq.registry import FailedJobRegistry

from payhooks.cli.main import main
from payhooks.cli.tables import shorten
from payhooks.devtools.sandbox.nexudus import SandboxState, invoice_record
from payhooks.devtools.sandbox.server import ThreadedServer
from payhooks.providers.generic import sample as generic_samples
from payhooks.providers.stripe.sample import paid_event
from payhooks.providers.stripe.settings import StripeSettings
from payhooks.settings import Settings
from payhooks.storage import redis_keys
from payhooks.storage.trail import Trail
from service.app import create_app
from tests.support.delivery import deliver, keep_unprocessed
from tests.support.money import wait_for
from tests.support.processes import PAYHOOKS, RunWorker, worker_env
from tests.support.settings import (
    AUTHORIZENET_KEY,
    BRAINTREE_PRIVATE,
    BRAINTREE_PUBLIC,
    GENERIC_SECRET,
    LIQPAY_KEY,
)

Captured = pytest.CaptureFixture[str]


def job_id(event: dict[str, Any]) -> str:
    return redis_keys.job_id(f"stripe:{event['id']}")


@pytest.fixture
def cli(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, capsys: Captured
) -> Callable[..., tuple[int, str, str]]:
    """Run `payhooks …` in this process against the test Redis: (exit code, stdout, stderr)."""
    monkeypatch.setenv("REDIS_URL", settings.require_redis())
    monkeypatch.setenv(
        "STRIPE_WEBHOOK_SECRETS", settings.provider(StripeSettings).webhook_secrets[0]
    )

    def run(*argv: str) -> tuple[int, str, str]:
        capsys.readouterr()
        code = main(list(argv))
        out, err = capsys.readouterr()
        return code, out, err

    return run


class TestFailedList:
    def test_fits_100_columns_and_wraps_reasons_whole(
        self, settings: Settings, run_worker: RunWorker, cli: Any
    ) -> None:
        short = paid_event(42, currency="GBP")  # AmountMismatch: a long reason
        missing = paid_event(77)
        deliver(settings, "stripe", short, missing)
        run_worker()

        code, out, _ = cli("failed", "list")
        assert code == 0
        lines = out.splitlines()
        assert all(len(line) <= 100 for line in lines), lines
        assert lines[0].split() == ["EVENT", "INVOICE", "ERROR_CLASS", "AGE", "REASON"]
        first = next(n for n, line in enumerate(lines) if f"stripe:{short['id']}" in line)
        assert "AmountMismatch" in lines[first]
        code, wide, _ = cli("failed", "list", "--json")
        reason = next(r["reason"] for r in json.loads(wide) if r["error_class"] == "AmountMismatch")
        # The reason whole, the part that says what to do included, on the row's lines.
        column = lines[first].index("invoice 42")
        rows = [lines[first]] + list(
            itertools.takewhile(lambda line: not line[:column].strip(), lines[first + 1 :])
        )
        shown = " ".join(line[column:].strip() for line in rows)
        assert shown == " ".join(reason.split())
        assert "…" not in out

        code, out, _ = cli("failed", "list", "--wide")
        assert reason in out  # --wide: the reason whole, and every column
        assert "EVENT_ID" in out.splitlines()[0]
        assert job_id(short) in out

    @pytest.mark.parametrize(
        ("arguments", "named"),
        [
            (("--provider", "nosuch"), "nosuch"),
            (("--invoice", "abc"), "abc"),
            (("--since", "yesterday"), "yesterday"),
            (("--error-class", "InvoiceNotFund"), "InvoiceNotFund"),  # a typo
        ],
    )
    def test_bad_filters_are_errors_not_an_empty_table(
        self, cli: Any, arguments: tuple[str, ...], named: str
    ) -> None:
        code, out, err = cli("failed", "list", *arguments)
        assert code == 2
        assert named in err
        assert "JOB_ID" not in out
        code, out, err = cli("failed", "list", *arguments, "--json")
        assert code == 2
        assert named in json.loads(out)["error"]["message"]

    def test_a_known_error_class_with_no_failed_job_is_an_empty_list(self, cli: Any) -> None:
        assert cli("failed", "list", "--error-class", "InvoiceNotFound", "--json")[:2] == (
            0,
            "[]\n",
        )

    def test_unknown_provider_error_lists_every_provider(self, cli: Any) -> None:
        _, _, err = cli("failed", "list", "--provider", "stripe-x")
        for name in ("stripe", "gocardless", "braintree", "authorizenet", "paypal-ipn", "epay"):
            assert name in err

    def test_generic_matches_every_source(
        self, settings: Settings, run_worker: RunWorker, cli: Any
    ) -> None:
        body, headers = generic_samples.signed(
            generic_samples.notification(invoice_id=77, amount="100.00"), GENERIC_SECRET
        )
        deliver(settings, "generic/bank", (body, headers))
        deliver(settings, "stripe", paid_event(78))
        run_worker()
        _, out, _ = cli("failed", "list", "--provider", "generic", "--json")
        [row] = json.loads(out)
        assert row["provider"] == "generic/bank"
        assert row["event_key"] == f"generic/bank:{headers['webhook-id']}"

    def test_an_unconfigured_generic_source_is_an_error_naming_those_configured(
        self, monkeypatch: pytest.MonkeyPatch, cli: Any
    ) -> None:
        monkeypatch.setenv("GENERIC_WEBHOOK_SECRETS", f"bank:{GENERIC_SECRET},erp:{GENERIC_SECRET}")
        code, out, err = cli("failed", "list", "--provider", "generic/nosuch")
        assert code == 2
        assert "generic/bank, generic/erp" in err
        assert out == ""
        code, out, _ = cli("failed", "list", "--provider", "generic/bank", "--json")
        assert (code, json.loads(out)) == (0, [])


class TestUnknownJobs:
    """A job id that never existed is not found (as `failed show` says), not "purged 0"
    or "expired"; "expired" is for a job the trail shows existed."""

    def test_purge_and_replay_of_an_id_that_never_existed_are_not_found(self, cli: Any) -> None:
        for argv in (
            ("failed", "purge", "nosuchjob", "--yes"),
            ("failed", "replay", "nosuchjob"),
            ("failed", "replay", "nosuchjob", "--dry-run"),
        ):
            code, out, err = cli(*argv)
            assert code == 1, argv
            assert "no job nosuchjob" in err, argv
            assert "purged" not in out, argv
            assert "expired" not in out, argv
            code, out, _ = cli(*argv, "--json")
            assert code == 1, argv
            assert json.loads(out)["error"]["code"] == "not_found", argv

    def test_an_expired_job_whose_trail_is_kept_is_expired(
        self, settings: Settings, run_worker: RunWorker, cli: Any, redis: Redis
    ) -> None:
        event = paid_event(77)
        deliver(settings, "stripe", event)
        run_worker()
        redis.delete(f"rq:job:{job_id(event)}")  # the failed job's own TTL ran out
        redis.zrem(
            FailedJobRegistry(queue=Queue(settings.queue_name, connection=redis)).key, job_id(event)
        )
        code, out, _ = cli("failed", "replay", job_id(event))
        assert code == 0
        assert f"{job_id(event)}: the job has expired; use `payhooks replay-event`" in out
        code, out, _ = cli("failed", "purge", job_id(event), "--yes", "--json")
        assert (code, json.loads(out)) == (0, {"purged": 0})


class TestPurge:
    def test_needs_a_filter_or_all_and_dry_run_deletes_nothing(
        self, settings: Settings, run_worker: RunWorker, cli: Any, queue: Queue
    ) -> None:
        missing, short = paid_event(77), paid_event(42, currency="GBP")
        deliver(settings, "stripe", missing, short)
        run_worker()
        registry = FailedJobRegistry(queue=queue)

        code, _, err = cli("failed", "purge", "--yes")
        assert code == 2
        assert "--all" in err
        assert len(registry) == 2

        code, out, _ = cli("failed", "purge", "--all", "--dry-run")
        assert code == 0
        assert "2 failed job(s) to purge" in out
        assert len(registry) == 2

        code, out, _ = cli("failed", "purge", "--error-class", "InvoiceNotFound", "--yes", "--json")
        assert (code, json.loads(out)) == (0, {"purged": 1})
        assert registry.get_job_ids() == [job_id(short)]

    def test_purged_is_noted_on_the_trail_whatever_the_event_key(
        self, settings: Settings, run_worker: RunWorker, cli: Any, redis: Redis
    ) -> None:
        # generic/bank:msg_… — its job id cannot be turned back into the event key.
        body, headers = generic_samples.signed(
            generic_samples.notification(invoice_id=77, amount="100.00"), GENERIC_SECRET
        )
        deliver(settings, "generic/bank", (body, headers))
        run_worker()
        code, _, _ = cli("failed", "purge", "--all", "--yes")
        assert code == 0
        event_key = f"generic/bank:{headers['webhook-id']}"
        stages = [e["stage"] for e in Trail(redis, ttl_seconds=60).history(event_key)]
        assert stages[-1] == "purged"


class TestShow:
    def test_after_a_successful_replay_shows_history_not_the_old_error(
        self,
        settings: Settings,
        sandbox_state: SandboxState,
        run_worker: RunWorker,
        cli: Any,
    ) -> None:
        event = paid_event(77)
        deliver(settings, "stripe", event)
        run_worker()
        code, out, _ = cli("failed", "show", job_id(event))
        assert code == 0
        assert "InvoiceNotFound" in out
        assert "status     failed" in out
        trail = out.split("\n\n", 1)[1]
        assert all(len(line) <= 100 for line in trail.splitlines())
        # The trail's reason is wrapped, never cut.
        assert "invoice id 77; create or correct it, then replay the job" in " ".join(trail.split())

        sandbox_state.invoices[77] = invoice_record(77)
        assert cli("failed", "replay", job_id(event))[0] == 0
        run_worker()

        code, out, _ = cli("failed", "show", job_id(event), "--json")
        shown = json.loads(out)
        assert shown["status"] == "finished"
        assert shown["current_failure"] is None
        assert (shown["runs"], shown["failures"], shown["replays"]) == (2, 1, 1)
        assert [e["stage"] for e in shown["trail"]][-3:] == ["failed", "replayed", "applied"]

        code, out, _ = cli("failed", "show", job_id(event))
        head = out.split("\n\n")[0]
        assert "status     finished" in head
        assert "runs       2 (1 failed, 1 replayed)" in head
        assert "InvoiceNotFound" not in head  # the old error is history, not the state
        assert "last       applied at" in head

    def test_the_reason_is_wrapped_within_100_columns_never_cut(
        self, settings: Settings, run_worker: RunWorker, cli: Any
    ) -> None:
        event = paid_event(77)
        deliver(settings, "stripe", event)
        run_worker()
        _, out, _ = cli("failed", "show", job_id(event))
        head = out.split("\n\n")[0]
        assert [line for line in head.splitlines() if len(line) > 100] == []
        reason = json.loads(cli("failed", "show", job_id(event), "--json")[1])
        assert " ".join(reason["current_failure"]["reason"].split()) in " ".join(head.split())

    def test_unknown_job(self, cli: Any) -> None:
        code, out, err = cli("failed", "show", "stripe-evt_nope")
        assert code == 1
        assert "no job stripe-evt_nope" in err
        code, out, _ = cli("failed", "show", "stripe-evt_nope", "--json")
        assert code == 1
        assert json.loads(out)["error"]["code"] == "not_found"


class TestAppliedEvent:
    """A finished job is not kept (RQ lets it and its result expire in a second:
    RESULT_TTL_SECONDS in payhooks/storage/jobs.py): the ops commands read an applied event from its trail and
    its kept body."""

    def test_shown_traced_and_replayed_from_its_trail(
        self,
        settings: Settings,
        run_worker: RunWorker,
        cli: Any,
        redis: Redis,
        sandbox_state: SandboxState,
    ) -> None:
        event = paid_event(42)
        key = f"stripe:{event['id']}"
        deliver(settings, "stripe", event)
        run_worker()
        assert sandbox_state.invoices[42]["PaidOn"] is not None
        # Nothing of the finished job is left a second later: its hash, RQ's result stream,
        # its registry entry.
        wait_for(
            lambda: redis.exists(f"rq:job:{job_id(event)}", f"rq:results:{job_id(event)}") == 0,
            10,
            "the finished job and its result to expire",
        )
        assert len(Queue(settings.queue_name, connection=redis).finished_job_registry) == 0
        for reference in (job_id(event), event["id"], key):
            code, out, _ = cli("failed", "show", reference, "--json")
            assert code == 0, reference
            shown = json.loads(out)
            assert (shown["status"], shown["event_key"], shown["current_failure"]) == (
                "finished",
                key,
                None,
            )
            assert (shown["runs"], shown["failures"], shown["replays"]) == (1, 0, 0)
        code, out, _ = cli("failed", "show", key)
        assert code == 0
        assert "status     finished" in out
        code, out, _ = cli("trace", event["id"], "--json")
        assert code == 0
        trail = json.loads(out)[key]
        assert [e["stage"] for e in trail] == ["received", "enqueued", "applied"]
        # Kept EVENT_RETENTION_DAYS, so nothing said twice: the job id is the event key's,
        # and empty outcome fields are left out.
        assert set(trail[1]) == {"at", "stage"}
        assert [k for k, v in trail[2].items() if v in ("", [], None)] == []

        code, out, _ = cli("replay-event", key)
        assert (code, out.strip()) == (0, f"{key}: queued as {job_id(event)}")
        run_worker()
        assert len(sandbox_state.tokens) == 1
        stages = [e["stage"] for e in json.loads(cli("trace", key, "--json")[1])[key]]
        assert stages[-2:] == ["replayed", "already_applied"]
        shown = json.loads(cli("failed", "show", key, "--json")[1])
        assert (shown["status"], shown["runs"], shown["replays"]) == ("finished", 2, 1)


class TestMessages:
    def test_trace_says_how_long_events_are_kept_by_value(self, cli: Any) -> None:
        code, _, err = cli("trace", "evt_unknown")
        assert code == 1
        assert "kept 30 days" in err
        assert "EVENT_RETENTION_DAYS" not in err

    def test_json_errors_on_stdout(self, cli: Any) -> None:
        for argv in (
            ("trace", "evt_unknown", "--json"),
            ("replay-event", "evt_unknown", "--json"),
            ("failed", "replay", "--json"),
        ):
            code, out, _ = cli(*argv)
            assert code != 0, argv
            assert json.loads(out)["error"]["message"], argv

    def test_argument_errors_with_json_are_json(self, capsys: Captured) -> None:
        with pytest.raises(SystemExit) as exited:
            main(["failed", "list", "--json", "--nosuch-option"])
        assert exited.value.code == 2
        assert "--nosuch-option" in json.loads(capsys.readouterr().out)["error"]["message"]

    def test_redis_unreachable_names_the_masked_url(
        self, monkeypatch: pytest.MonkeyPatch, capsys: Captured
    ) -> None:
        monkeypatch.setenv("REDIS_URL", "redis://:hunter2@127.0.0.1:1/0")
        assert main(["failed", "list"]) == 1
        err = capsys.readouterr().err
        assert "redis://:***@127.0.0.1:1/0" in err
        assert "hunter2" not in err

        assert main(["healthcheck", "--worker"]) == 1
        err = capsys.readouterr().err
        assert "could not reach Redis at redis://:***@127.0.0.1:1/0" in err
        assert "hunter2" not in err

        assert main(["healthcheck", "--worker", "--json"]) == 1
        report = json.loads(capsys.readouterr().out)
        assert report["healthy"] is False
        assert "redis://:***@127.0.0.1:1/0" in report["detail"]


def test_shorten_cuts_at_a_word_boundary() -> None:
    assert shorten("invoice 45 not marked paid: payment 100.00 EUR", 20) == "invoice 45 not…"
    assert shorten("short", 20) == "short"
    assert len(shorten("a" * 50, 20)) == 20  # one long word: cut, still within the width


class TestUnprocessed:
    """`payhooks unprocessed …`: --json on every action, errors included, as the other
    ops commands."""

    async def keep(self, settings: Settings, body: bytes) -> str:
        """As a receiver whose code could not read this body left it: its short id."""
        webhook = await keep_unprocessed(settings, "stripe", body)
        return webhook.key.rsplit(":", 1)[1][:16]

    async def test_replay_and_dismiss_take_json(
        self, settings: Settings, cli: Any, queue: Queue
    ) -> None:
        event = paid_event(42)
        short = await self.keep(settings, json.dumps(event).encode())
        code, out, _ = cli("unprocessed", "replay", short, "--json")
        assert code == 0
        [replayed] = json.loads(out)["replayed"]
        assert replayed["done"] is True
        assert f"stripe:{event['id']}: queued" in replayed["lines"][0]
        assert queue.count == 1

        short = await self.keep(settings, b'{"id": "evt_1", "type": ')
        code, out, _ = cli("unprocessed", "replay", short, "--json")
        assert code == 1
        assert json.loads(out)["replayed"][0]["done"] is False
        code, out, _ = cli("unprocessed", "dismiss", short, "--json")
        assert code == 0
        assert json.loads(out)["dismissed"][0]["lines"] == [f"{short}: dismissed"]

    def test_an_empty_list_says_so(self, cli: Any) -> None:
        assert cli("unprocessed", "list")[:2] == (0, "no unprocessed webhooks\n")
        assert json.loads(cli("unprocessed", "list", "--json")[1]) == []

    async def test_list_fits_100_columns_with_the_reason_whole(
        self, settings: Settings, cli: Any
    ) -> None:
        short = await self.keep(settings, b'{"id": "evt_1", "type": ')
        cli("unprocessed", "replay", short)  # the reason becomes the current code's, longer
        code, out, _ = cli("unprocessed", "list")
        assert code == 0
        assert [line for line in out.splitlines() if len(line) > 100] == []
        [listed] = json.loads(cli("unprocessed", "list", "--json")[1])
        assert listed["reason"] == "malformed_payload: body is not valid JSON: JSONDecodeError"
        assert listed["reason"] in " ".join(out.split())

    @pytest.mark.parametrize("action", ["show", "replay", "dismiss"])
    def test_errors_are_json_objects_on_stdout(self, cli: Any, action: str) -> None:
        code, out, err = cli("unprocessed", action, "0123456789abcdef")
        assert code == 1
        assert "no unprocessed webhook 0123456789abcdef (kept 30 days" in err
        assert "EVENT_RETENTION_DAYS" not in err
        code, out, err = cli("unprocessed", action, "0123456789abcdef", "--json")
        assert (code, err) == (1, "")
        assert json.loads(out)["error"]["code"] == "not_found"
        code, out, _ = cli("unprocessed", action, "0123", "--json")
        assert code == 2
        assert "at least 8 characters" in json.loads(out)["error"]["message"]

    def test_redis_unreachable_names_the_masked_url(
        self, monkeypatch: pytest.MonkeyPatch, capsys: Captured
    ) -> None:
        monkeypatch.setenv("REDIS_URL", "redis://:hunter2@127.0.0.1:1/0")
        assert main(["unprocessed", "show", "0123456789abcdef", "--json"]) == 1
        out = capsys.readouterr().out
        assert json.loads(out)["error"] == {
            "code": "redis_unreachable",
            "message": "could not reach Redis at redis://:***@127.0.0.1:1/0 (ConnectionError)",
        }
        assert "hunter2" not in out


def test_worker_with_redis_unreachable_says_where_in_one_line(settings: Settings) -> None:
    """A real `payhooks worker` process: it waits WORKER_REDIS_PATIENCE_SECONDS for Redis
    (logging that it does), then one line naming the masked URL, not a traceback."""
    env = {
        **worker_env(settings),
        "REDIS_URL": "redis://:hunter2@127.0.0.1:1/0",
        "WORKER_REDIS_PATIENCE_SECONDS": "1",
    }
    result = subprocess.run(  # noqa: PLW1510
        [*PAYHOOKS, "worker"], env=env, capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 1
    *logged, last = result.stderr.strip().splitlines()
    assert last == "payhooks: could not reach Redis at redis://:***@127.0.0.1:1/0 (ConnectionError)"
    events = [json.loads(line)["event"] for line in logged]
    assert events == ["worker.redis_lost", "worker.redis_unreachable"]
    assert "hunter2" not in result.stderr
    assert "Traceback" not in result.stderr


class TestSendTest:
    @pytest.fixture
    def receiver(self, settings: Settings) -> Iterator[ThreadedServer]:
        server = ThreadedServer(lambda: create_app(settings)).start()
        yield server
        server.stop()

    @pytest.mark.parametrize("provider", ["authorizenet", "liqpay", "braintree"])
    def test_prints_the_event_key_trace_accepts_within_100_columns(
        self,
        monkeypatch: pytest.MonkeyPatch,
        cli: Any,
        receiver: ThreadedServer,
        sandbox: ThreadedServer,
        provider: str,
    ) -> None:
        # Their ids are not what a payload calls its id: Authorize.Net's event is the
        # notification (not the transaction), LiqPay's the payment and its status,
        # Braintree's notification has none.
        monkeypatch.setenv("AUTHORIZENET_SIGNATURE_KEYS", AUTHORIZENET_KEY)
        monkeypatch.setenv("LIQPAY_PRIVATE_KEYS", LIQPAY_KEY)
        monkeypatch.setenv("BRAINTREE_KEYS", f"{BRAINTREE_PUBLIC}:{BRAINTREE_PRIVATE}")
        urls = ("--url", receiver.url, "--sandbox-url", sandbox.url)
        code, out, _ = cli("send-test", provider, "--invoice", "42", *urls)
        assert code == 0, out
        assert [line for line in out.splitlines() if len(line) > 100] == []
        [command] = [
            line.split("trace", 1)[1].strip() for line in out.splitlines() if "trace " in line
        ]
        assert command.startswith(f"payhooks trace {provider}:")
        event_key = command.removeprefix("payhooks trace ")
        code, traced, _ = cli("trace", event_key, "--json")
        assert code == 0
        assert [e["stage"] for e in json.loads(traced)[event_key]][:2] == ["received", "enqueued"]

        code, out, _ = cli("send-test", provider, "--invoice", "43", *urls, "--json")
        [event_key] = json.loads(out)["event_keys"]
        assert cli("trace", event_key)[0] == 0
