"""Typed settings, read once from the environment at start-up.

Every variable is listed in the README's configuration table. Secrets are kept out of
``repr`` so a settings object can be logged or printed safely.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit, urlunsplit

from payhooks.domain.providers import GENERIC, PROVIDERS

#: Where PayPal's message-signing certificates may be fetched from.
PAYPAL_CERT_URL_PREFIXES = (
    "https://api.paypal.com/",
    "https://api-m.paypal.com/",
    "https://api.sandbox.paypal.com/",
    "https://api-m.sandbox.paypal.com/",
)


class ConfigError(Exception):
    """A missing or malformed environment variable; the message names it."""


def _text(env: Mapping[str, str], name: str, default: str | None = None) -> str | None:
    value = env.get(name, "").strip()
    return value or default


def _int(env: Mapping[str, str], name: str, default: int, *, minimum: int = 0) -> int:
    raw = _text(env, name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a whole number, got {raw!r}") from None
    if value < minimum:
        raise ConfigError(f"{name} must be at least {minimum}, got {value}")
    return value


def _choice(env: Mapping[str, str], name: str, default: str, allowed: tuple[str, ...]) -> str:
    value = (_text(env, name, default) or default).lower()
    if value not in allowed:
        raise ConfigError(f"{name} must be one of {', '.join(allowed)}; got {value!r}")
    return value


def _sources(env: Mapping[str, str], name: str) -> dict[str, tuple[str, ...]]:
    """``bank:whsec_a,bank:whsec_b,cashdesk:whsec_c`` -> {bank: (a, b), cashdesk: (c,)}."""
    sources: dict[str, tuple[str, ...]] = {}
    for item in _list(env, name):
        source, _, secret = item.partition(":")
        if not re.fullmatch(r"[a-z0-9][a-z0-9-]{0,39}", source) or not secret:
            raise ConfigError(
                f"{name} takes source:secret pairs such as bank:whsec_…, with a lower-case "
                "source name (letters, digits, '-')"
            )
        sources[source] = (*sources.get(source, ()), secret)
    return sources


def _pairs(env: Mapping[str, str], name: str) -> tuple[tuple[str, str], ...]:
    """``public:private,public:private`` -> ((public, private), ...)."""
    pairs = []
    for item in _list(env, name):
        public, _, private = item.partition(":")
        if not public or not private:
            raise ConfigError(f"{name} takes public_key:private_key pairs, comma-separated")
        pairs.append((public, private))
    return tuple(pairs)


def _list(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    raw = env.get(name, "")
    return tuple(item.strip() for item in raw.split(",") if item.strip())


def _url(env: Mapping[str, str], name: str, default: str | None = None) -> str | None:
    value = _text(env, name, default)
    if value is None:
        return None
    parts = urlsplit(value)
    if not parts.scheme or not parts.netloc:
        # The value is not echoed: a malformed URL may still hold a password.
        raise ConfigError(
            f"{name} must be a URL with a scheme and host, such as scheme://host:port"
        )
    return value.rstrip("/")


def redact_url(url: str) -> str:
    """The URL with any password replaced, for printing and logs."""
    parts = urlsplit(url)
    userinfo, _, hosts = parts.netloc.rpartition("@")  # hosts: several for Sentinels
    username, colon, _ = userinfo.partition(":")
    if not colon:
        return url
    user = f"{username}:***@" if username else ":***@"
    return urlunsplit((parts.scheme, user + hosts, parts.path, parts.query, parts.fragment))


@dataclass(frozen=True, slots=True)
class Settings:
    redis_url: str | None = field(default=None, repr=False)  # may hold a password
    redis_password: str | None = field(default=None, repr=False)
    #: The receiver answers 2xx only once this many replicas hold the event (WAIT).
    redis_ack_replicas: int = 0
    redis_ack_timeout_ms: int = 500
    queue_name: str = "payhooks"

    nexudus_base_url: str = "https://spaces.nexudus.com"
    nexudus_username: str | None = None
    nexudus_password: str | None = field(default=None, repr=False)
    nexudus_timeout_seconds: int = 30
    nexudus_writes_per_minute: int = 60
    nexudus_writes_per_day: int = 5000
    nexudus_calls_per_minute: int = 120
    nexudus_min_interval_ms: int = 100
    #: How much longer our count windows are than Nexudus's (we count a call when its
    #: slot is taken, Nexudus when it arrives).
    nexudus_rate_margin_ms: int = 2000
    #: The breaker judges once this many recent calls are known, and opens when half failed.
    nexudus_breaker_min_calls: int = 10
    nexudus_breaker_open_seconds: int = 15
    nexudus_breaker_max_open_seconds: int = 120

    stripe_webhook_secrets: tuple[str, ...] = field(default=(), repr=False)
    stripe_api_key: str | None = field(default=None, repr=False)
    stripe_api_base: str | None = None
    stripe_tolerance_seconds: int = 300
    #: Apply events with ``livemode: false``; only for development and test endpoints.
    stripe_allow_test_mode: bool = False
    invoice_metadata_key: str = "nexudus_invoice_id"

    gocardless_webhook_secrets: tuple[str, ...] = field(default=(), repr=False)
    gocardless_access_token: str | None = field(default=None, repr=False)
    gocardless_environment: str = "live"
    gocardless_base_url: str | None = None
    gocardless_paid_action: str = "confirmed"

    liqpay_private_keys: tuple[str, ...] = field(default=(), repr=False)
    liqpay_allow_sandbox: bool = False
    epay_md5_secrets: tuple[str, ...] = field(default=(), repr=False)
    epay_merchant_number: str | None = None
    epay_api_password: str | None = field(default=None, repr=False)
    epay_api_url: str = "https://ssl.ditonlinebetalingssystem.dk/remote/payment.asmx"
    authorizenet_signature_keys: tuple[str, ...] = field(default=(), repr=False)
    authorizenet_login_id: str | None = field(default=None, repr=False)
    authorizenet_transaction_key: str | None = field(default=None, repr=False)
    authorizenet_api_url: str = "https://api.authorize.net/xml/v1/request.api"
    authorizenet_currency: str = "USD"
    paypal_webhook_ids: tuple[str, ...] = ()
    paypal_cert_url_prefixes: tuple[str, ...] = PAYPAL_CERT_URL_PREFIXES
    paypal_cert_trust_file: str | None = None
    paypal_provider_value: int | None = None
    paypal_ipn_receiver_emails: tuple[str, ...] = ()
    paypal_ipn_url: str = "https://ipnpb.paypal.com/cgi-bin/webscr"
    braintree_keys: tuple[tuple[str, str], ...] = field(default=(), repr=False)
    braintree_merchant_id: str | None = None
    braintree_environment: str = "production"
    braintree_invoice_field: str | None = None
    #: Operators' own systems: source name -> its Standard Webhooks secrets.
    generic_webhook_secrets: dict[str, tuple[str, ...]] = field(default_factory=dict, repr=False)

    job_max_attempts: int = 8
    job_retry_base_seconds: int = 10
    #: Transient failures retried in place (first wait, doubling) before RQ retries.
    job_retries_in_place: int = 6
    job_retry_in_place_first_ms: int = 250
    job_retry_max_seconds: int = 3600
    job_timeout_seconds: int = 300
    worker_maintenance_seconds: int = 60
    event_retention_days: int = 30
    failed_job_retention_days: int = 14

    log_format: str = "json"
    log_level: str = "INFO"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        log_format = _choice(env, "LOG_FORMAT", "json", ("json", "text"))
        return cls(
            redis_url=_url(env, "REDIS_URL"),
            redis_password=_text(env, "REDIS_PASSWORD"),
            redis_ack_replicas=_int(env, "REDIS_ACK_REPLICAS", 0),
            redis_ack_timeout_ms=_int(env, "REDIS_ACK_TIMEOUT_MS", 500, minimum=1),
            queue_name=_text(env, "PAYHOOKS_QUEUE", "payhooks") or "payhooks",
            nexudus_base_url=_url(env, "NEXUDUS_BASE_URL", "https://spaces.nexudus.com")
            or "https://spaces.nexudus.com",
            nexudus_username=_text(env, "NEXUDUS_USERNAME"),
            nexudus_password=_text(env, "NEXUDUS_PASSWORD"),
            nexudus_timeout_seconds=_int(env, "NEXUDUS_TIMEOUT_SECONDS", 30, minimum=1),
            nexudus_writes_per_minute=_int(env, "NEXUDUS_WRITES_PER_MINUTE", 60, minimum=1),
            nexudus_writes_per_day=_int(env, "NEXUDUS_WRITES_PER_DAY", 5000, minimum=1),
            nexudus_calls_per_minute=_int(env, "NEXUDUS_CALLS_PER_MINUTE", 120, minimum=1),
            nexudus_min_interval_ms=_int(env, "NEXUDUS_MIN_INTERVAL_MS", 100),
            nexudus_rate_margin_ms=_int(env, "NEXUDUS_RATE_MARGIN_MS", 2000),
            nexudus_breaker_min_calls=_int(env, "NEXUDUS_BREAKER_MIN_CALLS", 10, minimum=2),
            nexudus_breaker_open_seconds=_int(env, "NEXUDUS_BREAKER_OPEN_SECONDS", 15, minimum=1),
            nexudus_breaker_max_open_seconds=_int(
                env, "NEXUDUS_BREAKER_MAX_OPEN_SECONDS", 120, minimum=1
            ),
            stripe_webhook_secrets=_list(env, "STRIPE_WEBHOOK_SECRETS"),
            stripe_api_key=_text(env, "STRIPE_API_KEY"),
            stripe_api_base=_url(env, "STRIPE_API_BASE"),
            stripe_tolerance_seconds=_int(env, "STRIPE_TOLERANCE_SECONDS", 300, minimum=1),
            stripe_allow_test_mode=_choice(
                env, "STRIPE_ALLOW_TEST_MODE", "false", ("true", "false")
            )
            == "true",
            invoice_metadata_key=_text(env, "INVOICE_METADATA_KEY", "nexudus_invoice_id")
            or "nexudus_invoice_id",
            gocardless_webhook_secrets=_list(env, "GOCARDLESS_WEBHOOK_SECRETS"),
            gocardless_access_token=_text(env, "GOCARDLESS_ACCESS_TOKEN"),
            gocardless_environment=_choice(
                env, "GOCARDLESS_ENVIRONMENT", "live", ("live", "sandbox")
            ),
            gocardless_base_url=_url(env, "GOCARDLESS_BASE_URL"),
            gocardless_paid_action=_choice(
                env, "GOCARDLESS_PAID_ACTION", "confirmed", ("confirmed", "paid_out")
            ),
            liqpay_private_keys=_list(env, "LIQPAY_PRIVATE_KEYS"),
            liqpay_allow_sandbox=_choice(env, "LIQPAY_ALLOW_SANDBOX", "false", ("true", "false"))
            == "true",
            generic_webhook_secrets=_sources(env, "GENERIC_WEBHOOK_SECRETS"),
            epay_md5_secrets=_list(env, "EPAY_MD5_SECRETS"),
            epay_merchant_number=_text(env, "EPAY_MERCHANT_NUMBER"),
            epay_api_password=_text(env, "EPAY_API_PASSWORD"),
            epay_api_url=_url(
                env, "EPAY_API_URL", "https://ssl.ditonlinebetalingssystem.dk/remote/payment.asmx"
            )
            or "https://ssl.ditonlinebetalingssystem.dk/remote/payment.asmx",
            authorizenet_signature_keys=_list(env, "AUTHORIZENET_SIGNATURE_KEYS"),
            authorizenet_login_id=_text(env, "AUTHORIZENET_LOGIN_ID"),
            authorizenet_transaction_key=_text(env, "AUTHORIZENET_TRANSACTION_KEY"),
            authorizenet_api_url=_url(
                env, "AUTHORIZENET_API_URL", "https://api.authorize.net/xml/v1/request.api"
            )
            or "https://api.authorize.net/xml/v1/request.api",
            authorizenet_currency=(_text(env, "AUTHORIZENET_CURRENCY", "USD") or "USD").upper(),
            paypal_webhook_ids=_list(env, "PAYPAL_WEBHOOK_IDS"),
            paypal_cert_url_prefixes=_list(env, "PAYPAL_CERT_URL_PREFIXES")
            or PAYPAL_CERT_URL_PREFIXES,
            paypal_cert_trust_file=_text(env, "PAYPAL_CERT_TRUST_FILE"),
            paypal_provider_value=int(
                _choice(env, "PAYPAL_PROVIDER_VALUE", "auto", ("auto", "5", "6")).replace(
                    "auto", "0"
                )
            )
            or None,
            paypal_ipn_receiver_emails=_list(env, "PAYPAL_IPN_RECEIVER_EMAILS"),
            paypal_ipn_url=_url(env, "PAYPAL_IPN_URL", "https://ipnpb.paypal.com/cgi-bin/webscr")
            or "https://ipnpb.paypal.com/cgi-bin/webscr",
            braintree_keys=_pairs(env, "BRAINTREE_KEYS"),
            braintree_merchant_id=_text(env, "BRAINTREE_MERCHANT_ID"),
            braintree_environment=_choice(
                env, "BRAINTREE_ENVIRONMENT", "production", ("production", "sandbox")
            ),
            braintree_invoice_field=_text(env, "BRAINTREE_INVOICE_FIELD"),
            job_max_attempts=_int(env, "JOB_MAX_ATTEMPTS", 8, minimum=1),
            job_retries_in_place=_int(env, "JOB_RETRIES_IN_PLACE", 6),
            job_retry_in_place_first_ms=_int(env, "JOB_RETRY_IN_PLACE_FIRST_MS", 250),
            job_retry_base_seconds=_int(env, "JOB_RETRY_BASE_SECONDS", 10),
            job_retry_max_seconds=_int(env, "JOB_RETRY_MAX_SECONDS", 3600, minimum=1),
            job_timeout_seconds=_int(env, "JOB_TIMEOUT_SECONDS", 300, minimum=10),
            worker_maintenance_seconds=_int(env, "WORKER_MAINTENANCE_SECONDS", 60, minimum=10),
            event_retention_days=_int(env, "EVENT_RETENTION_DAYS", 30, minimum=1),
            failed_job_retention_days=_int(env, "FAILED_JOB_RETENTION_DAYS", 14, minimum=1),
            log_format=log_format,
            log_level=(_text(env, "LOG_LEVEL", "INFO") or "INFO").upper(),
        )

    # What each role cannot start without. Checked at start-up, so a misconfigured
    # deployment fails loudly instead of acknowledging webhooks it cannot handle.

    def require_redis(self) -> str:
        if self.redis_url is None:
            raise ConfigError("REDIS_URL is required (e.g. redis://localhost:6379/0)")
        return self.redis_url

    def check_receiver(self) -> None:
        self.require_redis()
        self.check_braintree()
        if not self.enabled_providers():
            variables = [spec.enabled_by_env for spec in PROVIDERS]
            raise ConfigError(
                f"no provider is configured: set {', '.join(variables)} or {GENERIC.enabled_by_env}"
            )

    def check_braintree(self) -> None:
        if self.braintree_keys and not self.braintree_merchant_id:
            raise ConfigError("BRAINTREE_MERCHANT_ID is required with BRAINTREE_KEYS")

    def check_worker(self) -> None:
        self.require_redis()
        if self.nexudus_username is None:
            raise ConfigError("NEXUDUS_USERNAME is required for the worker")
        if self.nexudus_password is None:
            raise ConfigError("NEXUDUS_PASSWORD is required for the worker")

    def enabled_providers(self) -> list[str]:
        """The providers whose URL exists, in registry order, then generic sources."""
        # The registry names each provider's enabling field (the domain cannot import us).
        enabled = [spec.name for spec in PROVIDERS if getattr(self, spec.enabled_by)]
        return enabled + [f"generic/{source}" for source in self.generic_webhook_secrets]

    @property
    def event_ttl_seconds(self) -> int:
        return self.event_retention_days * 86400

    @property
    def failed_job_ttl_seconds(self) -> int:
        return self.failed_job_retention_days * 86400
