"""Where the tests find the repository and the providers' published samples."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
#: Providers' published payloads; tests/fixtures/paypal/README.md says where each comes from.
FIXTURES = REPO / "tests" / "fixtures"
