"""Ops commands in a second terminal next to `payhooks dev`, with nothing exported."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from payhooks.devtools import dev_state
from payhooks.devtools.dev import TRIES, _banner
from payhooks.devtools.dev_state import DevInstance
from payhooks.devtools.embedded_redis import free_port
from payhooks.devtools.sandbox.server import wait_until_ready
from payhooks.settings import Settings
from tests.support.processes import PAYHOOKS
from tests.support.settings import with_settings

BARE_ENV = {"PATH": os.environ.get("PATH", "")}  # nothing payhooks reads


def payhooks(cwd: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: PLW1510
        [*PAYHOOKS, *argv], cwd=cwd, env=BARE_ENV, capture_output=True, text=True, timeout=30
    )


def as_json(cwd: Path, *argv: str) -> Any:
    done = payhooks(cwd, *argv, "--json")
    return json.loads(done.stdout)


def wait_for(predicate: Any, timeout: float = 20) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.3)
    raise AssertionError("timed out")


@pytest.mark.slow
def test_every_ops_command_works_next_to_payhooks_dev_with_nothing_exported(
    tmp_path: Path,
) -> None:
    port, sandbox_port = free_port(), free_port()
    dev = subprocess.Popen(
        [*PAYHOOKS, "dev", "--port", str(port), "--sandbox-port", str(sandbox_port)],
        cwd=tmp_path,
        env=BARE_ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    elsewhere = tmp_path / "docs" / "notes"  # anywhere in the checkout
    elsewhere.mkdir(parents=True)
    try:
        assert wait_until_ready(f"http://127.0.0.1:{port}/readyz")
        # A sender that never finishes its headers: production cuts it off after 10 s, and
        # so must dev (it runs the receiver as `payhooks serve` does). Checked at the end.
        dribbler = socket.create_connection(("127.0.0.1", port), timeout=30)
        dribbler.sendall(b"POST /webhooks/stripe HTTP/1.1\r\nHost: x\r\n")
        dribbling_since = time.monotonic()
        state_file = tmp_path / ".payhooks-dev" / "state.json"
        assert state_file.stat().st_mode & 0o077 == 0  # may hold secrets: owner only

        # send-test too finds the dev instance's ports (random here) and secrets.
        sent = as_json(tmp_path, "send-test", "stripe", "--invoice", "99")
        assert sent["status"] == 200, sent
        assert sent["url"] == f"http://127.0.0.1:{port}/webhooks/stripe"
        [event_key] = sent["event_keys"]
        event_id = event_key.removeprefix("stripe:")

        rows = wait_for(lambda: as_json(elsewhere, "failed", "list"))
        assert [(r["event_id"], r["error_class"]) for r in rows] == [(event_id, "InvoiceNotFound")]
        assert "InvoiceNotFound" in payhooks(tmp_path, "failed", "show", event_id).stdout
        assert f"stripe:{event_id}" in payhooks(tmp_path, "trace", "99").stdout

        httpx.post(f"http://127.0.0.1:{sandbox_port}/_sandbox/invoices", json={"Id": 99})
        replayed = as_json(tmp_path, "failed", "replay", event_id)
        assert len(replayed["replayed"]) == 1
        shown = wait_for(
            lambda: (
                (s := as_json(tmp_path, "failed", "show", event_id))["status"] == "finished" and s
            )
        )
        assert shown["current_failure"] is None
        assert shown["replays"] == 1

        # replay-event needs the receiver's secrets: the dev ones come with the state file.
        again = as_json(tmp_path, "replay-event", event_id)
        assert again["event_key"] == f"stripe:{event_id}"
        assert "queued" in again["message"]

        assert as_json(tmp_path, "failed", "purge", "--all", "--dry-run") == {"would_purge": []}

        checked = payhooks(tmp_path, "check-config", "--probe", "--json")
        config = json.loads(checked.stdout)
        assert checked.returncode == 0, config
        assert config["valid"] is True
        assert config["dev_instance"] == str(state_file)
        results = {r["target"]: r["result"] for r in config["probe"]}
        assert results["Redis"] == results["Nexudus"] == "ok"
        assert results["GoCardless access token"] == "ok"
        assert results["Authorize.Net API login"] == "ok"
        assert results["ePay web service"] == "reachable"

        assert as_json(tmp_path, "healthcheck")["healthy"] is True
        assert as_json(tmp_path, "healthcheck", "--worker")["healthy"] is True

        assert dribbler.recv(1024) == b""  # closed by the receiver, without an answer
        assert 9.5 <= time.monotonic() - dribbling_since < 25
        dribbler.close()
    finally:
        dev.send_signal(signal.SIGINT)
        output, _ = dev.communicate(timeout=30)
    assert dev.returncode == 0, output
    assert ".payhooks-dev/state.json" in output  # the banner says where ops commands look
    assert "scheduler.started" in output  # the scheduler runs beside the worker, and stops
    assert "scheduler.stopped" in output
    assert not (tmp_path / ".payhooks-dev" / "state.json").exists()

    stopped = payhooks(tmp_path, "failed", "list")
    assert stopped.returncode == 2
    assert "REDIS_URL" in stopped.stderr
    assert "payhooks dev" in stopped.stderr


def started(process: subprocess.Popen[bytes]) -> None:
    """Until its command line shows (it reads empty for a moment after exec)."""
    wait_for(lambda: Path(f"/proc/{process.pid}/cmdline").read_bytes(), timeout=5)


class TestStateFile:
    def instance(self, pid: int) -> DevInstance:
        return DevInstance(
            pid=pid,
            receiver_url="http://127.0.0.1:18080",
            sandbox_url="http://127.0.0.1:18090",
            env={"REDIS_URL": "redis://127.0.0.1:16379/0", "STRIPE_WEBHOOK_SECRETS": "whsec_x"},
        )

    def test_found_from_a_subdirectory_while_alive(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        # A process whose command line names payhooks, as `payhooks dev`'s does.
        live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(10)", "payhooks"])
        started(live)
        try:
            dev_state.write(tmp_path, self.instance(live.pid))
            below = tmp_path / "a" / "b"
            below.mkdir(parents=True)
            monkeypatch.chdir(below)
            env, found = dev_state.environment({"PATH": "/bin"})
            assert found is not None
            assert env["REDIS_URL"] == "redis://127.0.0.1:16379/0"
            assert env["PATH"] == "/bin"
            # An exported REDIS_URL wins over any dev instance.
            assert dev_state.environment({"REDIS_URL": "redis://elsewhere:6379/0"})[1] is None
        finally:
            live.kill()
            live.wait()
        assert dev_state.find() is None  # gone with its process

    def test_a_dead_or_reused_process_id_is_ignored(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.chdir(tmp_path)
        gone = subprocess.Popen(["true"])
        gone.wait()
        dev_state.write(tmp_path, self.instance(gone.pid))
        assert dev_state.find() is None
        other = subprocess.Popen(["sleep", "5"])  # alive, but not payhooks
        started(other)
        try:
            dev_state.write(tmp_path, self.instance(other.pid))
            assert dev_state.find() is None
        finally:
            other.kill()
            other.wait()


def test_the_banner_fits_100_columns_and_its_send_tests_need_no_urls(settings: Settings) -> None:
    # Five-digit ports, every provider enabled: the widest banner `payhooks dev` prints.
    banner = _banner(with_settings(settings, redis_url="redis://127.0.0.1:65535/0"), 65535, 65534)
    assert [line for line in banner.splitlines() if len(line) > 100] == []
    for attempt in TRIES:
        # send-test finds the running instance's ports and secrets by itself.
        assert f"  .venv/bin/payhooks send-test {' '.join(attempt.arguments())}\n" in banner
    assert "--url" not in banner
    assert "--sandbox-url" not in banner
