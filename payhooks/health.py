"""`payhooks check-config` and `payhooks healthcheck` (the image's HEALTHCHECK)."""

from __future__ import annotations

import os
import socket
import sys

import httpx
from redis.exceptions import RedisError

from payhooks import redis_connect
from payhooks.settings import ConfigError, Settings, redact_url


def check_config(settings: Settings, *, role: str) -> int:
    """Print what is configured, never a secret; exit 2 if a role cannot start."""
    problems = []
    for name, check in (("serve", settings.check_receiver), ("worker", settings.check_worker)):
        if role in (name, "all"):
            try:
                check()
            except ConfigError as exc:
                problems.append(f"{name}: {exc}")
    gocardless_unusable = settings.gocardless_webhook_secrets and not (
        settings.gocardless_access_token
    )
    if (
        role in ("worker", "all")
        and settings.authorizenet_signature_keys
        and not (settings.authorizenet_login_id and settings.authorizenet_transaction_key)
    ):
        problems.append(
            "worker: AUTHORIZENET_SIGNATURE_KEYS is set but AUTHORIZENET_LOGIN_ID or "
            "AUTHORIZENET_TRANSACTION_KEY is not: no Authorize.Net payment could be confirmed"
        )
    if (
        role in ("worker", "all")
        and settings.epay_md5_secrets
        and not settings.epay_merchant_number
    ):
        problems.append(
            "worker: EPAY_MD5_SECRETS is set but EPAY_MERCHANT_NUMBER is not: no ePay payment "
            "could be confirmed"
        )
    if role in ("worker", "all") and gocardless_unusable:
        problems.append(
            "worker: GOCARDLESS_WEBHOOK_SECRETS is set but GOCARDLESS_ACCESS_TOKEN is not: "
            "every GoCardless payment would fail its lookup"
        )

    def secret(value: object) -> str:
        return "set" if value else "not set"

    lines = [
        ("Redis", redact_url(settings.redis_url) if settings.redis_url else "not set"),
        ("queue", settings.queue_name),
        ("providers enabled", ", ".join(settings.enabled_providers()) or "none"),
        ("Stripe webhook secrets", f"{len(settings.stripe_webhook_secrets)} set"),
        ("Stripe API key", secret(settings.stripe_api_key)),
        ("GoCardless webhook secrets", f"{len(settings.gocardless_webhook_secrets)} set"),
        ("GoCardless access token", secret(settings.gocardless_access_token)),
        ("GoCardless environment", settings.gocardless_base_url or settings.gocardless_environment),
        ("GoCardless paid on", settings.gocardless_paid_action),
        ("Nexudus", settings.nexudus_base_url),
        ("Nexudus user", settings.nexudus_username or "not set"),
        ("Nexudus password", secret(settings.nexudus_password)),
        (
            "Nexudus limits",
            (
                f"{settings.nexudus_writes_per_minute} writes/min, "
                f"{settings.nexudus_writes_per_day} writes/day, "
                f"{settings.nexudus_calls_per_minute} calls/min"
            ),
        ),
        ("job attempts", str(settings.job_max_attempts)),
        (
            "retention",
            (
                f"events {settings.event_retention_days} d, "
                f"failed jobs {settings.failed_job_retention_days} d"
            ),
        ),
    ]
    for label, value in lines:
        print(f"{label:<28} {value}")
    for problem in problems:
        print(f"problem: {problem}", file=sys.stderr)
    if problems:
        return 2
    print("configuration is valid" + ("" if role == "all" else f" for {role}"))
    return 0


def _container_role() -> str:
    """What the container's main process runs: `payhooks worker` or `payhooks serve`."""
    try:
        command = open("/proc/1/cmdline", "rb").read().split(b"\0")  # noqa: SIM115
    except OSError:
        return "serve"
    return "worker" if b"worker" in command else "serve"


def healthcheck(*, url: str, worker: bool) -> int:
    # One image, one HEALTHCHECK: a container started as `payhooks worker` is checked as one.
    if not worker and _container_role() == "worker":
        worker = True
    if not worker:
        try:
            status = httpx.get(url, timeout=3).status_code
        except httpx.HTTPError as exc:
            print(f"unhealthy: {url} unreachable ({exc.__class__.__name__})", file=sys.stderr)
            return 1
        if status != 200:
            print(f"unhealthy: {url} answered {status}", file=sys.stderr)
        return 0 if status == 200 else 1
    # A worker is healthy when Redis answers and a worker of this host is registered
    # (RQ keeps the registration alive with heartbeats, so a hung worker drops out).
    redis_url = os.environ.get("REDIS_URL")
    if not redis_url:
        return 1
    try:
        redis = redis_connect.connect(
            redis_url,
            password=os.environ.get("REDIS_PASSWORD"),
            socket_timeout=3,
            socket_connect_timeout=3,
        )
        from rq import Worker

        hostname = socket.gethostname()
        alive = any(w.hostname == hostname for w in Worker.all(connection=redis))
        redis.close()
    except RedisError:
        return 1
    return 0 if alive else 1
