"""Every Redis connection payhooks makes, sync or async, from one ``REDIS_URL``.

``redis://`` and ``rediss://`` name one server. ``redis+sentinel://`` (``rediss+sentinel://``
for TLS) names Sentinels and the master they watch, and the client asks them where the
primary is on every new connection, so after a failover the next connection reaches the
promoted replica:

    redis+sentinel://[[user]:password@]host:port[,host:port...]/master-name[/db][?sentinel_auth=yes]

The password (in the URL, else ``REDIS_PASSWORD``) is the data nodes'. The Sentinels are
reached without one, with their own (``REDIS_SENTINEL_PASSWORD``), or with the data nodes'
given ``?sentinel_auth=yes`` (as deployments that protect their Sentinels with the Redis
password have it).

TLS (``rediss``) applies to the Sentinels and the data nodes alike, with the same trust
(``REDIS_TLS_CA_FILE``, else the system's CAs) and client certificate, if any.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import redis
import redis.asyncio
import redis.asyncio.sentinel
import redis.sentinel
from redis.maint_notifications import MaintNotificationsConfig

from payhooks.settings import ConfigError, Settings

SENTINEL_SCHEMES = {"redis+sentinel": False, "rediss+sentinel": True}  # scheme -> TLS
#: Options that also apply to the Sentinels themselves (a dead one must not hang us).
_SENTINEL_OPTIONS = ("socket_timeout", "socket_connect_timeout")
# redis-py types its Sentinel classes from 8.2 on, not before: seen through these names they
# type-check alike on both, so an upgrade of the types alone is not a red build.
_SyncSentinel: Callable[..., Any] = redis.sentinel.Sentinel
_AsyncSentinel: Callable[..., Any] = redis.asyncio.sentinel.Sentinel
# redis-py 7+ asks every new connection for Redis Enterprise's maintenance notifications
# (CLIENT MAINT_NOTIFICATIONS): an extra command each connect that open-source Redis refuses,
# and one more step in the handshake that has changed between minor releases (8.2 moved it
# into a pipelined handshake). Failover here is Sentinel's job, so it is off everywhere.
_NO_MAINT_NOTIFICATIONS = {"maint_notifications_config": MaintNotificationsConfig(enabled=False)}


@dataclass(frozen=True, slots=True)
class Access:
    """What reaching Redis takes besides its URL: passwords, and the TLS files."""

    password: str | None = None
    sentinel_password: str | None = None
    tls_ca_file: str | None = None
    tls_cert_file: str | None = None
    tls_key_file: str | None = None
    tls_check_hostname: bool = True

    @classmethod
    def of(cls, settings: Settings) -> Access:
        return cls(
            password=settings.redis_password,
            sentinel_password=settings.redis_sentinel_password,
            tls_ca_file=settings.redis_tls_ca_file,
            tls_cert_file=settings.redis_tls_cert_file,
            tls_key_file=settings.redis_tls_key_file,
            tls_check_hostname=settings.redis_tls_check_hostname,
        )

    def tls_options(self) -> dict[str, Any]:
        """redis-py's options for a TLS connection (a plain one takes none of them)."""
        options: dict[str, Any] = {"ssl_check_hostname": self.tls_check_hostname}
        if self.tls_ca_file:
            options["ssl_ca_certs"] = self.tls_ca_file
        if self.tls_cert_file:
            options["ssl_certfile"] = self.tls_cert_file
            options["ssl_keyfile"] = self.tls_key_file
        return options


@dataclass(frozen=True, slots=True)
class SentinelTarget:
    sentinels: tuple[tuple[str, int], ...]
    master: str
    db: int
    username: str | None
    password: str | None
    tls: bool
    sentinel_auth: bool = False

    @classmethod
    def parse(cls, url: str) -> SentinelTarget:
        parts = urlsplit(url)
        userinfo, _, hosts = parts.netloc.rpartition("@")
        username, _, password = userinfo.partition(":")
        sentinels = []
        for item in hosts.split(","):
            host, _, port = item.strip().rpartition(":")
            if not host or not port.isdigit():
                raise ConfigError(
                    "REDIS_URL: a Sentinel URL lists host:port pairs, such as "
                    "redis+sentinel://s1:26379,s2:26379,s3:26379/mymaster/0"
                )
            sentinels.append((host.strip("[]"), int(port)))
        master, _, db = parts.path.strip("/").partition("/")
        if not master or (db and not db.isdigit()):
            raise ConfigError("REDIS_URL: a Sentinel URL ends in /master-name or /master-name/db")
        query = parse_qs(parts.query)
        auth = query.pop("sentinel_auth", ["no"])[-1].lower()
        if query or auth not in ("yes", "no"):
            raise ConfigError("REDIS_URL: a Sentinel URL takes one option, ?sentinel_auth=yes")
        return cls(
            sentinels=tuple(sentinels),
            master=unquote(master),
            db=int(db or 0),
            username=unquote(username) or None,
            password=unquote(password) or None,
            tls=SENTINEL_SCHEMES[parts.scheme],
            sentinel_auth=auth == "yes",
        )

    def node_options(self, access: Access, options: dict[str, Any]) -> dict[str, Any]:
        return {
            **_NO_MAINT_NOTIFICATIONS,
            **options,
            "db": self.db,
            "username": self.username,
            "password": self.password or access.password,
            **self._tls(access),
        }

    def sentinel_options(self, access: Access, options: dict[str, Any]) -> dict[str, Any]:
        credentials: dict[str, Any] = {}
        if access.sentinel_password:
            credentials = {"password": access.sentinel_password}
        elif self.sentinel_auth:
            credentials = {"username": self.username, "password": self.password or access.password}
        return {
            **{k: v for k, v in options.items() if k in _SENTINEL_OPTIONS},
            **_NO_MAINT_NOTIFICATIONS,
            **credentials,
            **self._tls(access),
        }

    def _tls(self, access: Access) -> dict[str, Any]:
        return {"ssl": True, **access.tls_options()} if self.tls else {"ssl": False}


def is_sentinel_url(url: str) -> bool:
    return urlsplit(url).scheme in SENTINEL_SCHEMES


def connect(url: str, *, access: Access = Access(), **options: Any) -> redis.Redis:
    """A sync client; ``access.password`` is used when the URL holds none."""
    if not is_sentinel_url(url):
        return redis.Redis.from_url(url, **_one_server(url, access, options))
    target = SentinelTarget.parse(url)
    sentinel = _SyncSentinel(
        target.sentinels,
        sentinel_kwargs=target.sentinel_options(access, options),
        **target.node_options(access, options),
    )
    client: redis.Redis = sentinel.master_for(target.master, redis_class=_SentinelManaged)
    return client


def connect_async(url: str, *, access: Access = Access(), **options: Any) -> redis.asyncio.Redis:
    """An asyncio client; ``access.password`` is used when the URL holds none."""
    if not is_sentinel_url(url):
        return redis.asyncio.Redis.from_url(url, **_one_server(url, access, options))
    target = SentinelTarget.parse(url)
    sentinel = _AsyncSentinel(
        target.sentinels,
        sentinel_kwargs=target.sentinel_options(access, options),
        **target.node_options(access, options),
    )
    client: redis.asyncio.Redis = sentinel.master_for(
        target.master, redis_class=_AsyncSentinelManaged
    )
    return client


class _SentinelManaged(redis.Redis):
    """Closing the client also closes its connections to the Sentinels."""

    def close(self) -> None:
        super().close()
        for sentinel in self.connection_pool.sentinel_manager.sentinels:  # type: ignore[attr-defined]
            sentinel.close()


class _AsyncSentinelManaged(redis.asyncio.Redis):
    """Closing the client also closes its connections to the Sentinels."""

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        await super().aclose(close_connection_pool)
        for sentinel in self.connection_pool.sentinel_manager.sentinels:  # type: ignore[attr-defined]
            await sentinel.aclose()


def sync_client(settings: Settings, **options: Any) -> redis.Redis:
    """The configured Redis (``REDIS_URL``, ``REDIS_PASSWORD``, the TLS files), for workers,
    ops and health checks."""
    return connect(settings.require_redis(), access=Access.of(settings), **options)


def async_client(settings: Settings, **options: Any) -> redis.asyncio.Redis:
    """The configured Redis, for the receiver."""
    return connect_async(settings.require_redis(), access=Access.of(settings), **options)


def _one_server(url: str, access: Access, options: dict[str, Any]) -> dict[str, Any]:
    # redis-py lets a password in the URL win over this keyword, as documented above.
    found = {**_NO_MAINT_NOTIFICATIONS, **options}
    if access.password:
        found["password"] = access.password
    if urlsplit(url).scheme == "rediss":
        found.update(access.tls_options())
    return found
