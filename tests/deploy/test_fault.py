"""The fault script (bench/fault.py) as a test: 1,000 webhooks through real processes
while Nexudus fails 20% of requests and a worker is killed; every acknowledged event
must be applied exactly once."""

from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_every_acknowledged_event_is_applied_exactly_once() -> None:
    result = subprocess.run(  # noqa: PLW1510
        [sys.executable, "-m", "bench.fault", "--webhooks", "1000"],
        capture_output=True,
        text=True,
        timeout=850,
    )
    print(result.stdout)
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    assert "RESULT: exactly once" in result.stdout
    assert "lost events              0" in result.stdout
