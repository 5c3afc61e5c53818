"""`payhooks healthcheck`: the image's HEALTHCHECK, for a receiver or a worker."""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import Mapping

import httpx
from redis.exceptions import RedisError

from payhooks.cli.cli_output import emit
from payhooks.settings import ConfigError, Settings, redact_url
from payhooks.storage import redis_connect


def _container_role() -> str:
    """What the container's main process runs: `payhooks worker` or `payhooks serve`."""
    try:
        command = open("/proc/1/cmdline", "rb").read().split(b"\0")  # noqa: SIM115
    except OSError:
        return "serve"
    return "worker" if b"worker" in command else "serve"


def healthcheck(
    *, url: str, worker: bool, env: Mapping[str, str] | None = None, as_json: bool = False
) -> int:
    """Exit 0 when healthy; either way, say why (Docker keeps the output with the status)."""
    # One image, one HEALTHCHECK: a container started as `payhooks worker` is checked as one.
    if not worker and _container_role() == "worker":
        worker = True
    if worker:
        healthy, detail = _worker_health(os.environ if env is None else env)
    else:
        healthy, detail = _receiver_health(url)
    if as_json:
        emit({"healthy": healthy, "role": "worker" if worker else "serve", "detail": detail})
    elif healthy:
        print(f"healthy: {detail}")
    else:
        print(f"unhealthy: {detail}", file=sys.stderr)
    return 0 if healthy else 1


def _receiver_health(url: str) -> tuple[bool, str]:
    try:
        status = httpx.get(url, timeout=3).status_code
    except httpx.HTTPError as exc:
        return False, f"{url} unreachable ({exc.__class__.__name__})"
    return status == 200, f"{url} answered {status}"


def _worker_health(env: Mapping[str, str]) -> tuple[bool, str]:
    # A worker is healthy when Redis answers and a worker of this host is registered
    # (RQ keeps the registration alive with heartbeats, so a hung worker drops out).
    redis_url = env.get("REDIS_URL", "").strip()
    if not redis_url:
        return False, "REDIS_URL is not set: no Redis to find this host's worker in"
    where = redact_url(redis_url)
    hostname = socket.gethostname()
    try:
        # The Redis settings only, as the worker reads them (passwords, TLS files).
        settings = Settings.redis_from_env(env)
        redis = redis_connect.sync_client(settings, socket_timeout=3, socket_connect_timeout=3)
        from rq import Worker

        try:
            names = [w.name for w in Worker.all(connection=redis) if w.hostname == hostname]
        finally:
            redis.close()
    except ConfigError as exc:
        return False, str(exc)
    except RedisError as exc:
        return False, f"could not reach Redis at {where} ({exc.__class__.__name__})"
    if not names:
        return False, f"no worker of host {hostname} is registered in Redis at {where}"
    return True, f"worker {', '.join(sorted(names))} of host {hostname} is registered at {where}"
