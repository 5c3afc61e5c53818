"""The domain imports nothing of ours above it (import-linter holds that) and names nothing
above it either: no dotted path, file path or import in a string, comment or docstring, so
no registry of strings can grow back in the bottom floor."""

from __future__ import annotations

import re

from tests.support.paths import REPO

UPPER = ("service", "workers", "bench") + tuple(
    f"payhooks{sep}{floor}"
    for floor in ("settings", "storage", "providers", "cli", "devtools", "logs")
    for sep in "./"
)
NAMED = re.compile(r"(?<![\w.])(" + "|".join(re.escape(name) for name in UPPER) + r")(?=[./:]\w)")


def test_the_domain_names_no_module_above_it() -> None:
    found = [
        f"{path.relative_to(REPO)}:{number}: {line.strip()}"
        for path in sorted((REPO / "payhooks" / "domain").rglob("*"))
        if path.is_file() and path.suffix in (".py", ".json")
        for number, line in enumerate(path.read_text().splitlines(), start=1)
        if NAMED.search(line)
    ]
    assert found == []


def test_the_check_finds_a_name_in_a_string() -> None:
    assert NAMED.search('settings="payhooks.providers.forte.settings:ForteSettings"')
    assert NAMED.search("receiver = 'service.providers.stripe:StripeWebhook'")
    assert NAMED.search("# see workers/jobs.py")
    assert not NAMED.search("payhooks.domain.events")
