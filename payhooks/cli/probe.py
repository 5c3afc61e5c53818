"""`payhooks check-config --probe`: reach what the configuration names, read-only.

Redis gets a PING; Nexudus a password grant (the token is thrown away, not cached);
each provider API credential one read-only call that needs it. Nothing here prints or
returns a secret: a result says what answered and how, by value, never by credential.
"""

from __future__ import annotations

import httpx
from redis.exceptions import RedisError

from payhooks.providers.kit.probes import Check, ProbeResult
from payhooks.providers.tools import TOOLS
from payhooks.settings import Settings, redact_url
from payhooks.storage import eviction_policy, redis_connect

# ProbeResult: what check-config prints for each call (the providers' calls make them too).
__all__ = ["ProbeResult", "probe"]

TIMEOUT_SECONDS = 5.0


def probe(settings: Settings, http: httpx.Client | None = None) -> list[ProbeResult]:
    client = http or httpx.Client(timeout=TIMEOUT_SECONDS)
    checks: list[Check] = [
        ("Redis", lambda: _redis(settings)),
        ("Nexudus", lambda: _nexudus(settings, client)),
    ]
    for tools in TOOLS.values():
        if tools.probe is not None:
            checks += tools.probe(settings, client)
    results = []
    for target, check in checks:
        try:
            results.append(check())
        except httpx.TimeoutException:
            results.append(ProbeResult(target, False, f"no answer in {TIMEOUT_SECONDS:g} s"))
        except httpx.HTTPError as exc:
            results.append(ProbeResult(target, False, f"unreachable ({exc.__class__.__name__})"))
    if http is None:
        client.close()
    return results


def _redis(settings: Settings) -> ProbeResult:
    if not settings.redis_url:
        return ProbeResult("Redis", False, "REDIS_URL is not set")
    where = redact_url(settings.redis_url)
    try:
        redis = redis_connect.sync_client(settings, socket_timeout=3, socket_connect_timeout=3)
        try:
            redis.ping()
            problem = eviction_policy.check(redis)
        finally:
            redis.close()
    except RedisError as exc:
        return ProbeResult("Redis", False, f"could not reach {where} ({exc.__class__.__name__})")
    if problem is not None:
        return ProbeResult("Redis", False, f"{where}: {problem}")
    return ProbeResult("Redis", True, f"{where} answered PING, maxmemory-policy noeviction")


def _nexudus(settings: Settings, http: httpx.Client) -> ProbeResult:
    if not (settings.nexudus_username and settings.nexudus_password):
        return ProbeResult("Nexudus", False, "NEXUDUS_USERNAME and NEXUDUS_PASSWORD are not set")
    url = f"{settings.nexudus_base_url}/api/token"
    answer = http.post(
        url,
        data={
            "grant_type": "password",
            "username": settings.nexudus_username,
            "password": settings.nexudus_password,
        },
    )
    if answer.status_code == 200 and _json(answer).get("access_token"):
        return ProbeResult(
            "Nexudus", True, f"{settings.nexudus_base_url} gave {settings.nexudus_username} a token"
        )
    error = _json(answer).get("error") or f"HTTP {answer.status_code}"
    return ProbeResult(
        "Nexudus",
        False,
        f"{settings.nexudus_base_url} refused {settings.nexudus_username} ({error})",
    )


def _json(answer: httpx.Response) -> dict[str, object]:
    try:
        body = answer.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}
