"""Baseline (b), the floor: a bare aiohttp handler that checks the HMAC by hand and
LPUSHes the raw body with redis.asyncio. No normalisation, no dedupe, no RQ job.

Usage: python -m bench.bare_app PORT REDIS_URL SECRET
"""

import hashlib
import hmac
import sys

from aiohttp import web
from redis.asyncio import Redis


def main() -> None:
    port, redis_url, secret = int(sys.argv[1]), sys.argv[2], sys.argv[3].encode()
    redis = Redis.from_url(redis_url)

    async def handle(request: web.Request) -> web.Response:
        body = await request.read()
        header = request.headers.get("Stripe-Signature", "")
        parts = dict(item.split("=", 1) for item in header.split(",") if "=" in item)
        expected = hmac.new(secret, parts.get("t", "").encode() + b"." + body, hashlib.sha256)
        if not hmac.compare_digest(expected.hexdigest(), parts.get("v1", "")):
            return web.Response(status=400)
        await redis.lpush("bench:raw", body)
        return web.Response(status=200)

    app = web.Application(client_max_size=1024 * 1024)
    app.router.add_post("/webhooks/stripe", handle)
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)


if __name__ == "__main__":
    main()
