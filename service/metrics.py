"""Prometheus metrics of the receiver, served at GET /metrics (with those a provider's
receiver keeps itself, such as Stripe's refused test-mode events)."""

import os

import prometheus_client
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.multiprocess import MultiProcessCollector

REDIS_UP = Gauge(
    "payhooks_redis_up",
    "1 when this receiver could read Redis at the last scrape.",
    multiprocess_mode="mostrecent",  # with `serve --workers N`: the latest scrape's answer
)

WEBHOOKS = Counter(
    "payhooks_webhooks_total",
    "Webhook requests by provider and outcome.",
    ["provider", "outcome"],
)
EVENTS = Counter(
    "payhooks_events_total",
    "Provider events in verified webhooks by provider and outcome (queued, duplicate, ignored).",
    ["provider", "outcome"],
)
ACK_SECONDS = Histogram(
    "payhooks_ack_seconds",
    "Time from reading a webhook to answering it.",
    ["provider"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)


def render_local() -> bytes:
    """This receiver's metrics; with `serve --workers N`, those of all N processes."""
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return prometheus_client.generate_latest()
    registry = CollectorRegistry()
    MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    return prometheus_client.generate_latest(registry)
