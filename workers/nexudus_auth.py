"""Nexudus bearer tokens, cached in Redis and shared by every worker process.

``POST /api/token`` with a form-encoded password grant gives an access token and a
refresh token. Refresh tokens rotate (using one invalidates it), so refreshing is done
under a Redis lock: two workers refreshing at once would make one of them fail.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx
from redis import Redis
from redis.exceptions import LockError

from payhooks.storage import redis_keys
from payhooks.storage.redis_keys import text
from workers.errors import NexudusPermanentError, NexudusThrottled, NexudusTransientError

log = logging.getLogger("payhooks.nexudus.auth")

TOKEN_PATH = "/api/token"  # noqa: S105 (a path, not a password)
# Refresh this long before expiry, so no call goes out with a token about to lapse.
REFRESH_MARGIN_SECONDS = 300


class NexudusAuth:
    def __init__(
        self,
        redis: Redis,
        http: httpx.Client,
        *,
        username: str,
        password: str,
        http_timeout_seconds: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        # Held across up to two token requests (refresh, then password): it must not
        # lapse mid-way, or two workers could spend the same rotating refresh token.
        self._lock_seconds = 2 * http_timeout_seconds + 15
        self._redis = redis
        self._http = http
        self._username = username
        self._password = password
        self._clock = clock

    def token(self) -> str:
        cached = self._cached()
        if cached is not None:
            return cached
        with self._locked():
            # Another worker may have refreshed while we waited for the lock.
            cached = self._cached()
            if cached is not None:
                return cached
            return self._renew()

    def invalidate(self, token: str) -> None:
        """Forget ``token`` after a 401, unless another worker already replaced it."""
        with self._locked():
            current = self._redis.hget(redis_keys.NEXUDUS_AUTH, "access_token")
            if current is not None and text(current) == token:
                self._redis.hset(redis_keys.NEXUDUS_AUTH, "expires_at", "0")

    @contextmanager
    def _locked(self) -> Iterator[None]:
        lock = self._redis.lock(
            redis_keys.NEXUDUS_AUTH_LOCK,
            timeout=self._lock_seconds,
            blocking_timeout=self._lock_seconds,
        )
        if not lock.acquire():
            raise NexudusTransientError(
                "another worker is renewing the Nexudus token",
                method="POST",
                path=TOKEN_PATH,
                status=None,
            )
        try:
            yield
        finally:
            try:
                lock.release()
            except LockError:
                log.warning("nexudus.auth_lock_expired")

    def _cached(self) -> str | None:
        state = self._redis.hmget(redis_keys.NEXUDUS_AUTH, ["access_token", "expires_at"])
        access, expires_at = state
        if access is None or expires_at is None:
            return None
        if float(expires_at) - REFRESH_MARGIN_SECONDS <= self._clock():
            return None
        return text(access)

    def _renew(self) -> str:
        refresh = self._redis.hget(redis_keys.NEXUDUS_AUTH, "refresh_token")
        if refresh is not None:
            grant = self._grant(
                {"grant_type": "refresh_token", "refresh_token": text(refresh)},
                allow_invalid=True,
            )
            if grant is not None:
                return self._store(grant)
            log.info("nexudus.refresh_rejected")
        grant = self._grant(
            {"grant_type": "password", "username": self._username, "password": self._password},
            allow_invalid=False,
        )
        assert grant is not None
        return self._store(grant)

    def _store(self, grant: dict[str, Any]) -> str:
        access = grant.get("access_token")
        if not isinstance(access, str) or not access:
            raise NexudusPermanentError(
                "token response without access_token", method="POST", path=TOKEN_PATH, status=200
            )
        expires_in = float(grant.get("expires_in") or 0)
        mapping: dict[Any, str] = {
            "access_token": access,
            "expires_at": str(self._clock() + expires_in),
        }
        refresh = grant.get("refresh_token")
        if isinstance(refresh, str) and refresh:
            mapping["refresh_token"] = refresh
        self._redis.hset(redis_keys.NEXUDUS_AUTH, mapping=mapping)
        log.info("nexudus.authenticated", extra={"expires_in": int(expires_in)})
        return access

    def _grant(self, form: dict[str, str], *, allow_invalid: bool) -> dict[str, Any] | None:
        try:
            response = self._http.post(TOKEN_PATH, data=form)
        except httpx.TimeoutException:
            raise NexudusTransientError(
                "timed out", method="POST", path=TOKEN_PATH, status=None
            ) from None
        except httpx.TransportError as exc:
            raise NexudusTransientError(
                f"connection failed ({exc.__class__.__name__})",
                method="POST",
                path=TOKEN_PATH,
                status=None,
            ) from None
        status = response.status_code
        if status in (409, 429):
            raise NexudusThrottled("throttled", method="POST", path=TOKEN_PATH, status=status)
        if status >= 500:
            raise NexudusTransientError(
                "server error", method="POST", path=TOKEN_PATH, status=status
            )
        if status == 200:
            body = response.json()
            return body if isinstance(body, dict) else {}
        error = _oauth_error(response)
        if allow_invalid and error == "invalid_grant":
            return None
        raise NexudusPermanentError(
            f"authentication refused ({error}); check NEXUDUS_USERNAME and NEXUDUS_PASSWORD, "
            "that the user has API access and no two-factor authentication",
            method="POST",
            path=TOKEN_PATH,
            status=status,
        )


def _oauth_error(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return "unreadable error"
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        return str(body["error"])
    return "unknown error"
