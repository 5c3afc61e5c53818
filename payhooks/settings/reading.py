"""Reading settings from the environment: each field names its variable and default once.

A settings class declares its fields with ``setting(...)``; ``read_fields`` builds it from
an environment mapping. The default given to ``setting`` is both the dataclass default
(so tests and code can build the class directly) and what an unset variable means.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Callable, Collection, Mapping
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

T = TypeVar("T")

#: Reads one variable: (environment, variable name, default) -> value.
Reader = Callable[[Mapping[str, str], str, Any], Any]

#: What ``check-config`` prints for a section: (label, value) rows, never a secret.
Rows = list[tuple[str, str]]


class ConfigError(Exception):
    """A missing or malformed environment variable; the message names it."""


def setting(
    variable: str,
    default: Any = None,
    read: Reader | None = None,
    *,
    secret: bool = False,
    factory: Callable[[], Any] | None = None,
) -> Any:
    """A dataclass field read from ``variable``; a secret is kept out of ``repr``."""
    metadata = {"variable": variable, "read": read or text}
    if factory is not None:
        return dataclasses.field(default_factory=factory, repr=not secret, metadata=metadata)
    return dataclasses.field(default=default, repr=not secret, metadata=metadata)


def variables(cls: type) -> dict[str, str]:
    """Field name -> the variable that sets it."""
    return {
        f.name: f.metadata["variable"] for f in dataclasses.fields(cls) if "variable" in f.metadata
    }


def secret_variables(cls: type) -> set[str]:
    """The variables of its fields kept out of ``repr``."""
    return {
        f.metadata["variable"]
        for f in dataclasses.fields(cls)
        if "variable" in f.metadata and not f.repr
    }


def read_fields(
    cls: type[T], env: Mapping[str, str], *, only: Collection[str] | None = None, **extra: Any
) -> T:
    """``cls`` from ``env``; given ``only``, just those fields are read (the rest default)."""
    values = dict(extra)
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        if "variable" not in f.metadata or (only is not None and f.name not in only):
            continue
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        values[f.name] = f.metadata["read"](env, f.metadata["variable"], default)
    return cls(**values)


def _raw(env: Mapping[str, str], name: str) -> str | None:
    return env.get(name, "").strip() or None


def text(env: Mapping[str, str], name: str, default: str | None) -> str | None:
    return _raw(env, name) or default


def upper(env: Mapping[str, str], name: str, default: str) -> str:
    return (_raw(env, name) or default).upper()


def whole(minimum: int = 0) -> Reader:
    """A whole number of at least ``minimum``."""

    def read(env: Mapping[str, str], name: str, default: int) -> int:
        raw = _raw(env, name)
        if raw is None:
            return default
        try:
            value = int(raw)
        except ValueError:
            raise ConfigError(f"{name} must be a whole number, got {raw!r}") from None
        if value < minimum:
            raise ConfigError(f"{name} must be at least {minimum}, got {value}")
        return value

    return read


def choice(*allowed: str) -> Reader:
    def read(env: Mapping[str, str], name: str, default: str) -> str:
        value = (_raw(env, name) or default).lower()
        if value not in allowed:
            raise ConfigError(f"{name} must be one of {', '.join(allowed)}; got {value!r}")
        return value

    return read


def flag(env: Mapping[str, str], name: str, default: bool) -> bool:
    value: str = choice("true", "false")(env, name, "true" if default else "false")
    return value == "true"


def readable_file(env: Mapping[str, str], name: str, default: str | None) -> str | None:
    """A path to a file this process can read (a mounted certificate, say)."""
    path = _raw(env, name) or default
    if path is not None and not os.access(path, os.R_OK):
        raise ConfigError(f"{name}: no readable file at {path}")
    return path


def items(env: Mapping[str, str], name: str, default: tuple[str, ...]) -> tuple[str, ...]:
    """Comma-separated values; none means the default."""
    raw = env.get(name, "")
    return tuple(item.strip() for item in raw.split(",") if item.strip()) or default


def pairs(
    env: Mapping[str, str], name: str, default: tuple[tuple[str, str], ...]
) -> tuple[tuple[str, str], ...]:
    """``public:private,public:private`` -> ((public, private), ...)."""
    found = []
    for item in items(env, name, ()):
        public, _, private = item.partition(":")
        if not public or not private:
            raise ConfigError(f"{name} takes public_key:private_key pairs, comma-separated")
        found.append((public, private))
    return tuple(found) or default


def sources(
    env: Mapping[str, str], name: str, default: dict[str, tuple[str, ...]]
) -> dict[str, tuple[str, ...]]:
    """``bank:whsec_a,bank:whsec_b,cashdesk:whsec_c`` -> {bank: (a, b), cashdesk: (c,)}."""
    found: dict[str, tuple[str, ...]] = {}
    for item in items(env, name, ()):
        source, _, secret = item.partition(":")
        if not re.fullmatch(r"[a-z0-9][a-z0-9-]{0,39}", source) or not secret:
            raise ConfigError(
                f"{name} takes source:secret pairs such as bank:whsec_…, with a lower-case "
                "source name (letters, digits, '-')"
            )
        found[source] = (*found.get(source, ()), secret)
    return found or default


#: Long enough that guessing is hopeless, and safe in a URL path as it is.
_TOKEN = re.compile(r"[A-Za-z0-9_-]{24,128}")


def url_tokens(env: Mapping[str, str], name: str, default: tuple[str, ...]) -> tuple[str, ...]:
    tokens = items(env, name, default)
    # Twelve different characters at least: "aaaa…" or "0123456789…" is long but guessable.
    if not all(_TOKEN.fullmatch(token) and len(set(token)) >= 12 for token in tokens):
        # The values are not echoed: they are secrets.
        raise ConfigError(
            f"{name} takes random tokens of 24 to 128 letters, digits, '-' or '_' "
            "(e.g. python3 -c 'import secrets; print(secrets.token_urlsafe(32))')"
        )
    return tokens


def url(env: Mapping[str, str], name: str, default: str | None) -> str | None:
    value = _raw(env, name) or default
    if value is None:
        return None
    parts = urlsplit(value)
    if not parts.scheme or not parts.netloc:
        # The value is not echoed: a malformed URL may still hold a password.
        raise ConfigError(
            f"{name} must be a URL with a scheme and host, such as scheme://host:port"
        )
    return value.rstrip("/")


def require_https(variable: str, address: str) -> None:
    """Refuse a URL that would carry a credential in the clear: https://, or plain http
    on loopback only (a stand-in)."""
    parts = urlsplit(address)
    loopback = (parts.hostname or "") in ("127.0.0.1", "localhost", "::1")
    if parts.scheme.lower() != "https" and not loopback:
        raise ConfigError(f"{variable} must be https:// (plain http only on loopback)")


def redact_url(address: str) -> str:
    """The URL with any password replaced, for printing and logs."""
    parts = urlsplit(address)
    userinfo, _, hosts = parts.netloc.rpartition("@")  # hosts: several for Sentinels
    username, colon, _ = userinfo.partition(":")
    if not colon:
        return address
    user = f"{username}:***@" if username else ":***@"
    return urlunsplit((parts.scheme, user + hosts, parts.path, parts.query, parts.fragment))


def currency_code(env: Mapping[str, str], name: str, default: str) -> str:
    """An ISO 4217 code, such as USD."""
    value = (_raw(env, name) or default).upper()
    if not re.fullmatch(r"[A-Z]{3}", value):
        raise ConfigError(f"{name} must be a three-letter currency code such as USD")
    return value


def is_set(value: object) -> str:
    return "set" if value else "not set"


def count(values: object) -> str:
    return f"{len(values)} set" if isinstance(values, tuple | dict | list) else is_set(values)
