"""One run of a scheduled task at a time, across every instance, and where it got to.

A run takes its task's lease (``SET NX PX`` with a token of its own) or does not run. The
lease lapses unless the run commits within ``seconds``: each commit advances the task's
cursor and renews the lease in one script, and only while the lease still holds the run's
token. Its writes (record-once's scripts) are fenced by the same token. So a run that
outlives its lease (a process paused, a provider answering slowly) finds, at its next
write, that another run has taken over, and writes nothing more: two runs never write
side by side, and the cursor never moves for a run that no longer holds the task.

The cursor is kept in Redis (``payhooks:task:<name>:cursor``), so a restart, or another
instance, resumes where the last committed page left off.
"""

from __future__ import annotations

import secrets

from redis import Redis

from payhooks.storage import redis_keys
from payhooks.storage.record_once import Fence
from payhooks.storage.redis_keys import text

# KEYS: the lease, the cursor. ARGV: the run's token, the new cursor, the cursor's TTL in
# seconds, the lease in milliseconds.
_COMMIT = """
local lease_key = KEYS[1]
local cursor_key = KEYS[2]
local token = ARGV[1]
local cursor = ARGV[2]
local cursor_ttl = ARGV[3]
local lease_ms = ARGV[4]
if redis.call('GET', lease_key) ~= token then
    return 0
end
redis.call('SET', cursor_key, cursor, 'EX', cursor_ttl)
redis.call('PEXPIRE', lease_key, lease_ms)
return 1
"""

_RELEASE = """
local lease_key = KEYS[1]
local token = ARGV[1]
if redis.call('GET', lease_key) == token then
    return redis.call('DEL', lease_key)
end
return 0
"""


class LeaseLost(Exception):
    """The lease lapsed and another run may hold the task now: this run stops writing."""


class TaskLease:
    """A run's hold on its task: take it, commit under it, give it back."""

    def __init__(self, redis: Redis, task: str, *, seconds: int, cursor_ttl_seconds: int) -> None:
        self.task = task
        self._redis = redis
        self._seconds = seconds
        self._cursor_ttl = cursor_ttl_seconds
        self._key = redis_keys.task_lease(task)
        self._cursor_key = redis_keys.task_cursor(task)
        self._token = secrets.token_hex(16)
        self._commit = redis.register_script(_COMMIT)
        self._release = redis.register_script(_RELEASE)

    @property
    def fence(self) -> Fence:
        """What record-once checks before each write of this run."""
        return Fence(self._key, self._token)

    def acquire(self) -> bool:
        """Take the task, unless another run holds it."""
        return bool(self._redis.set(self._key, self._token, nx=True, px=self._seconds * 1000))

    def cursor(self) -> str | None:
        """Where the last committed run of the task left off (None: it never committed)."""
        raw = self._redis.get(self._cursor_key)
        return None if raw is None else text(raw)

    def commit(self, cursor: str) -> None:
        """Advance the cursor and renew the lease, while the lease is ours; else LeaseLost."""
        keys = [self._key, self._cursor_key]
        args: list[str | int] = [self._token, cursor, self._cursor_ttl, self._seconds * 1000]
        if not self._commit(keys=keys, args=args):
            raise LeaseLost(f"task {self.task}: its lease lapsed; another run may hold it")

    def release(self) -> None:
        """Give the task back, if it is still ours (a lapsed lease is someone else's now)."""
        self._release(keys=[self._key], args=[self._token])
