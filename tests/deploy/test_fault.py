"""The fault script (bench/fault.py) as a test: 1,000 webhooks through real processes
while Nexudus fails 20% of requests and a worker is killed; every acknowledged event
must be applied exactly once."""

from __future__ import annotations

import os
import sys

import pytest

from tests.support.processes import Started


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_every_acknowledged_event_is_applied_exactly_once(processes: Started) -> None:
    # Output to files, not pipes: a pipe is held open by every process the script started,
    # so waiting for its end would wait for theirs.
    fault = processes.start([sys.executable, "-m", "bench.fault", "--webhooks", "1000"], os.environ)
    [returncode] = processes.wait(fault, timeout=850)
    output = processes.stdout(fault).decode()
    print(output)
    assert returncode == 0, output + processes.stderr(fault).decode()[-3000:]
    assert "RESULT: exactly once" in output
    assert "lost events              0" in output
