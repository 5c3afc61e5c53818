"""A trail entry as Redis keeps it (short: it is kept EVENT_RETENTION_DAYS, one per step of
every event), and as every reader sees it, whichever release wrote it."""

from __future__ import annotations

import pytest

from payhooks.storage import redis_keys
from payhooks.storage.trail import entry_at, read_entries, read_entry

AT_MS = 1796607846585
AT = "2026-12-07T01:44:06.585Z"
DIGEST = "3c268a08655e95820914f3e94120cf1d"
#: A webhook's key as releases up to main 8cd8f52 named it (all 256 bits of the digest).
OLD_KEY = redis_keys.webhook("3c268a08655e95820914f3e94120cf1d8f57fe7d6ce882c3851d5dcfff6a3688")


def test_an_outcome_is_kept_briefly_and_read_with_its_names() -> None:
    kept = entry_at(AT_MS, "applied", token_id=900002, token_created=True, paid_on_set=True)
    assert kept == '1796607846585 applied {"ti":900002,"tc":true,"ps":true}'
    assert read_entry(kept) == [
        {
            "at": AT,
            "stage": "applied",
            "token_id": 900002,
            "token_created": True,
            "paid_on_set": True,
        }
    ]


def test_arrival_and_hand_off_are_one_entry_read_as_two() -> None:
    kept = entry_at(AT_MS, "received+enqueued", webhook=redis_keys.webhook(DIGEST))
    # The field says which kind of origin: the key's prefix is not kept.
    assert kept == f'1796607846585 received+enqueued {{"w":"{DIGEST}"}}'
    assert read_entry(kept.encode()) == [
        {"at": AT, "stage": "received", "webhook": redis_keys.webhook(DIGEST)},
        {"at": AT, "stage": "enqueued"},
    ]
    polled = entry_at(AT_MS, "polled+enqueued", origin=redis_keys.polled(DIGEST))
    assert read_entry(polled)[0]["origin"] == redis_keys.polled(DIGEST)


def test_a_webhook_kept_by_an_older_release_is_named_by_its_own_key() -> None:
    # An unprocessed webhook kept before this release, replayed by it: its 256-bit key.
    kept = entry_at(AT_MS, "received", webhook=OLD_KEY, source="unprocessed")
    assert read_entry(kept) == [
        {"at": AT, "stage": "received", "webhook": OLD_KEY, "source": "unprocessed"}
    ]


def test_entries_of_older_releases_read_as_they_were_written() -> None:
    # As main 8cd8f52 wrote them, then one this release added: one history.
    old = [
        f'{{"at":"2026-12-07T01:48:21.478Z","stage":"received","webhook":"{OLD_KEY}"}}',
        '{"at":"2026-12-07T01:48:21.478Z","stage":"enqueued"}',
        '{"at":"2026-12-07T01:48:22.172Z","stage":"failed","reason":"no","attempt":1}',
    ]
    later = entry_at(AT_MS + 600_000, "replayed", job_id="j")
    history = read_entries([e.encode() for e in old] + [later])
    assert history == [
        {"at": "2026-12-07T01:48:21.478Z", "stage": "received", "webhook": OLD_KEY},
        {"at": "2026-12-07T01:48:21.478Z", "stage": "enqueued"},
        {"at": "2026-12-07T01:48:22.172Z", "stage": "failed", "reason": "no", "attempt": 1},
        {"at": "2026-12-07T01:54:06.585Z", "stage": "replayed", "job_id": "j"},
    ]
    # The audit takes the latest by its time as text: old and new compare alike.
    assert max(history, key=lambda e: str(e["at"]))["stage"] == "replayed"


def test_any_field_reads_back_as_written() -> None:
    reason = 'PaidOn "2026" \n {"stage":"enqueued"} é'
    kept = entry_at(AT_MS, "failed", reason=reason, attempt=2, transient=False, by=None)
    assert "\n" not in kept
    assert read_entry(kept) == [
        {
            "at": AT,
            "stage": "failed",
            "reason": reason,
            "attempt": 2,
            "transient": False,
            "by": None,
        }
    ]
    assert read_entry(entry_at(AT_MS, "purged")) == [{"at": AT, "stage": "purged"}]


def test_a_field_named_as_another_is_kept_is_refused() -> None:
    with pytest.raises(ValueError, match="short name"):
        entry_at(AT_MS, "applied", ti=1)


def test_a_trail_entry_never_holds_a_newline() -> None:
    line = entry_at(AT_MS, "ignored", reason="two\nlines")
    assert "\n" not in line
    assert read_entries([line])[0]["reason"] == "two\nlines"
    with pytest.raises(ValueError, match="newline"):
        entry_at(AT_MS, "ignored\nreceived")
