"""The one settings object: core settings and one section per provider, read once at start-up.

Every variable is listed in the README's configuration table. Secrets are kept out of
``repr`` so a settings object can be logged or printed safely.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from functools import cache
from typing import TypeVar

from payhooks.settings.provider import Intake, ProviderSettings
from payhooks.settings.reading import (
    ConfigError,
    choice,
    flag,
    read_fields,
    readable_file,
    secret_variables,
    setting,
    upper,
    url,
    variables,
    whole,
)

S = TypeVar("S", bound=ProviderSettings)


@cache
def sections() -> Mapping[str, type[ProviderSettings]]:
    """Each provider's settings section by its name, in registry order, the generic last."""
    # Imported when first needed, not with this module: each section imports the settings'
    # readers (payhooks.settings), which must be whole before the sections load.
    from payhooks.providers.sections import SECTIONS

    return SECTIONS


def section_classes() -> tuple[type[ProviderSettings], ...]:
    return tuple(sections().values())


def every_variable() -> dict[str, bool]:
    """Every variable payhooks reads, and whether it holds a secret."""
    found: dict[str, bool] = {}
    classes: tuple[type, ...] = (Settings, *section_classes())
    for cls in classes:
        hidden = secret_variables(cls)
        found.update({variable: variable in hidden for variable in variables(cls).values()})
    return found


@dataclass(frozen=True, slots=True)
class Settings:
    redis_url: str | None = setting("REDIS_URL", None, url, secret=True)  # may hold a password
    redis_password: str | None = setting("REDIS_PASSWORD", secret=True)
    #: The Sentinels' own password (their requirepass), when it is not the data nodes'.
    redis_sentinel_password: str | None = setting("REDIS_SENTINEL_PASSWORD", secret=True)
    #: TLS (rediss:// or rediss+sentinel://): a private CA to trust, and a client
    #: certificate with its key for servers that require one (tls-auth-clients).
    redis_tls_ca_file: str | None = setting("REDIS_TLS_CA_FILE", None, readable_file)
    redis_tls_cert_file: str | None = setting("REDIS_TLS_CERT_FILE", None, readable_file)
    redis_tls_key_file: str | None = setting("REDIS_TLS_KEY_FILE", None, readable_file)
    #: Sentinels name the primary by IP address unless told to announce host names: a
    #: certificate that names hosts only then fails the host check, not the CA's.
    redis_tls_check_hostname: bool = setting("REDIS_TLS_CHECK_HOSTNAME", True, flag)
    #: The receiver answers 2xx only once this many replicas hold the event (WAIT).
    redis_ack_replicas: int = setting("REDIS_ACK_REPLICAS", 0, whole())
    redis_ack_timeout_ms: int = setting("REDIS_ACK_TIMEOUT_MS", 500, whole(minimum=1))
    queue_name: str = setting("PAYHOOKS_QUEUE", "payhooks")

    nexudus_base_url: str = setting("NEXUDUS_BASE_URL", "https://spaces.nexudus.com", url)
    nexudus_username: str | None = setting("NEXUDUS_USERNAME")
    nexudus_password: str | None = setting("NEXUDUS_PASSWORD", secret=True)
    nexudus_timeout_seconds: int = setting("NEXUDUS_TIMEOUT_SECONDS", 30, whole(minimum=1))
    nexudus_writes_per_minute: int = setting("NEXUDUS_WRITES_PER_MINUTE", 60, whole(minimum=1))
    nexudus_writes_per_day: int = setting("NEXUDUS_WRITES_PER_DAY", 5000, whole(minimum=1))
    nexudus_calls_per_minute: int = setting("NEXUDUS_CALLS_PER_MINUTE", 120, whole(minimum=1))
    nexudus_min_interval_ms: int = setting("NEXUDUS_MIN_INTERVAL_MS", 100, whole())
    #: How much longer our count windows are than Nexudus's (we count a call when its
    #: slot is taken, Nexudus when it arrives).
    nexudus_rate_margin_ms: int = setting("NEXUDUS_RATE_MARGIN_MS", 2000, whole())
    #: The breaker judges once this many recent calls are known, and opens when half failed.
    nexudus_breaker_min_calls: int = setting("NEXUDUS_BREAKER_MIN_CALLS", 10, whole(minimum=2))
    nexudus_breaker_open_seconds: int = setting(
        "NEXUDUS_BREAKER_OPEN_SECONDS", 15, whole(minimum=1)
    )
    nexudus_breaker_max_open_seconds: int = setting(
        "NEXUDUS_BREAKER_MAX_OPEN_SECONDS", 120, whole(minimum=1)
    )

    #: The metadata key naming the Nexudus invoice (Stripe and GoCardless objects).
    invoice_metadata_key: str = setting("INVOICE_METADATA_KEY", "nexudus_invoice_id")

    job_max_attempts: int = setting("JOB_MAX_ATTEMPTS", 8, whole(minimum=1))
    job_retry_base_seconds: int = setting("JOB_RETRY_BASE_SECONDS", 10, whole())
    #: Transient failures retried in place (first wait, doubling) before RQ retries.
    job_retries_in_place: int = setting("JOB_RETRIES_IN_PLACE", 6, whole())
    job_retry_in_place_first_ms: int = setting("JOB_RETRY_IN_PLACE_FIRST_MS", 250, whole())
    job_retry_max_seconds: int = setting("JOB_RETRY_MAX_SECONDS", 3600, whole(minimum=1))
    job_timeout_seconds: int = setting("JOB_TIMEOUT_SECONDS", 300, whole(minimum=10))
    worker_maintenance_seconds: int = setting("WORKER_MAINTENANCE_SECONDS", 60, whole(minimum=10))
    #: How long a worker waits for Redis to come back (a Sentinel election) before exiting.
    worker_redis_patience_seconds: int = setting("WORKER_REDIS_PATIENCE_SECONDS", 120, whole())
    event_retention_days: int = setting("EVENT_RETENTION_DAYS", 30, whole(minimum=1))
    failed_job_retention_days: int = setting("FAILED_JOB_RETENTION_DAYS", 14, whole(minimum=1))
    #: How long a scheduled run (a poll) holds its task without committing a page: another
    #: run of the task may start once it lapses, and the late one's writes are refused.
    task_lease_seconds: int = setting("TASK_LEASE_SECONDS", 60, whole(minimum=2))
    #: Scheduled reconciliation (workers/reconcile.py): a quick scan of what providers
    #: failed to deliver, often, over an overlapping window; a thorough one daily.
    reconcile_schedule: bool = setting("RECONCILE_SCHEDULE", True, flag)
    reconcile_every_seconds: int = setting("RECONCILE_EVERY_SECONDS", 900, whole(minimum=60))
    reconcile_window_seconds: int = setting("RECONCILE_WINDOW_SECONDS", 7200, whole(minimum=60))
    reconcile_full_every_seconds: int = setting(
        "RECONCILE_FULL_EVERY_SECONDS", 86400, whole(minimum=60)
    )
    reconcile_full_window_seconds: int = setting(
        "RECONCILE_FULL_WINDOW_SECONDS", 259200, whole(minimum=60)
    )
    #: How long a transaction listed pending is read back by later scans (a provider that
    #: lists by creation time only: Spreedly) before it is given up, told, and forgotten.
    reconcile_pending_days: int = setting("RECONCILE_PENDING_DAYS", 30, whole(minimum=1))

    log_format: str = setting("LOG_FORMAT", "json", choice("json", "text"))
    log_level: str = setting("LOG_LEVEL", "INFO", upper)

    #: One section per provider; a provider without one has its defaults (off).
    providers: tuple[ProviderSettings, ...] = ()

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        sections = tuple(section.from_env(env) for section in section_classes())
        return read_fields(cls, env, providers=sections)

    @classmethod
    def redis_from_env(cls, env: Mapping[str, str]) -> Settings:
        """Only what reaching Redis takes (the rest at its defaults): for a health check,
        which must not fail on a setting it does not use."""
        redis_fields = [f for f in variables(cls) if f.startswith("redis_")]
        return read_fields(cls, env, only=redis_fields)

    def provider(self, kind: type[S]) -> S:
        """The provider's section (its defaults when none was given)."""
        for section in self.providers:
            if type(section) is kind:
                return section
        return kind()

    def with_provider(self, section: ProviderSettings) -> Settings:
        """A copy with ``section`` in place of its provider's."""
        others = tuple(s for s in self.providers if type(s) is not type(section))
        return replace(self, providers=(*others, section))

    # What each role cannot start without. Checked at start-up, so a misconfigured
    # deployment fails loudly instead of acknowledging webhooks it cannot handle.

    def require_redis(self) -> str:
        if self.redis_url is None:
            raise ConfigError("REDIS_URL is required (e.g. redis://localhost:6379/0)")
        scheme = self.redis_url.partition("://")[0]
        # A setting that would be ignored is refused: the operator meant something by it.
        if (self.redis_tls_ca_file or self.redis_tls_cert_file) and not scheme.startswith("rediss"):
            raise ConfigError(
                "REDIS_TLS_CA_FILE and REDIS_TLS_CERT_FILE need a TLS REDIS_URL: "
                "rediss:// or rediss+sentinel://"
            )
        if (self.redis_tls_cert_file is None) != (self.redis_tls_key_file is None):
            raise ConfigError("REDIS_TLS_CERT_FILE and REDIS_TLS_KEY_FILE go together: set both")
        if self.redis_sentinel_password is not None:
            if not scheme.endswith("+sentinel"):
                raise ConfigError(
                    "REDIS_SENTINEL_PASSWORD needs a Sentinel REDIS_URL: redis+sentinel://…"
                )
            if "sentinel_auth=yes" in self.redis_url:
                raise ConfigError(
                    "REDIS_SENTINEL_PASSWORD and ?sentinel_auth=yes (the Sentinels take the "
                    "Redis password) contradict each other: keep one"
                )
        return self.redis_url

    def check_receiver(self) -> None:
        self.require_redis()
        for section in self.providers:
            section.check()
        if not self.enabled_providers():
            variables = [section.enabling_variable() for section in section_classes()]
            raise ConfigError(f"no provider is configured: set one of {', '.join(variables)}")

    def check_worker(self) -> None:
        self.require_redis()
        self.nexudus_credentials()
        for section in self.providers:
            section.check()

    def nexudus_credentials(self) -> tuple[str, str]:
        """The Nexudus user and password the worker signs in with."""
        if self.nexudus_username is None:
            raise ConfigError("NEXUDUS_USERNAME is required for the worker")
        if self.nexudus_password is None:
            raise ConfigError("NEXUDUS_PASSWORD is required for the worker")
        return self.nexudus_username, self.nexudus_password

    def enabled_providers(self) -> list[str]:
        """The providers whose URL exists, in registry order, then generic sources."""
        return [url for name, kind in sections().items() for url in self.provider(kind).urls(name)]

    def configured_providers(self) -> list[str]:
        """Every provider with an intake on, in registry order: its URL names (one, or a
        generic source each), else its name when only its poll is on. check-config lists these."""
        found: list[str] = []
        for name, kind in sections().items():
            section = self.provider(kind)
            polled = [name] if section.intake_enabled(Intake.POLL) else []
            found += section.urls(name) or polled
        return found

    @property
    def event_ttl_seconds(self) -> int:
        return self.event_retention_days * 86400

    @property
    def failed_job_ttl_seconds(self) -> int:
        return self.failed_job_retention_days * 86400
