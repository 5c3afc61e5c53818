"""The RQ job of a scheduled task: one run, under the task's lease, logged and counted.

The scheduler (workers/scheduler.py) queues ``run_task(name)`` once per tick, on the same
queue as the payment jobs, so a run is an ordinary RQ job that any worker takes. A run
that finds the task held by another (its lease not lapsed) does nothing: one run at a time
across every worker. A run's failures are its result, counted and logged once; the next
tick tries again from the cursor, so a run never retries by itself.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from redis.exceptions import RedisError

from payhooks.providers.kit.step_errors import ProviderLookupError, ProviderLookupUnavailable
from payhooks.storage.task_lease import LeaseLost, TaskLease
from payhooks.storage.worker_metrics import WorkerMetrics
from workers import context
from workers.polls import Task

log = logging.getLogger("payhooks.task")

__all__ = ["run", "run_task"]


def run_task(name: str) -> dict[str, Any]:
    ctx = context.current()
    task = ctx.tasks.get(name)
    if task is None:
        # Queued by a scheduler whose settings turn on a task this worker's do not.
        log.warning("task.unknown", extra={"task": name})
        ctx.metrics.task_run(name, "unknown")
        return {"task": name, "result": "unknown"}
    lease = TaskLease(
        ctx.redis,
        name,
        seconds=ctx.settings.task_lease_seconds,
        cursor_ttl_seconds=ctx.settings.event_ttl_seconds,
    )
    return run(task, lease, ctx.metrics)


def run(task: Task, lease: TaskLease, metrics: WorkerMetrics) -> dict[str, Any]:
    """One run of ``task``, if its lease can be had; what happened."""
    fields: dict[str, Any] = {"task": task.name}
    if not lease.acquire():
        fields["result"] = "busy"
        log.info("task.busy", extra=fields)
        metrics.task_run(task.name, "busy")
        return fields
    started = time.monotonic()
    held = True
    try:
        fields.update(task.work(lease))
        fields["result"] = "ok"
    except LeaseLost:
        held = False
        fields["result"] = "lease_lost"
    except ProviderLookupUnavailable as exc:
        fields.update(result="unavailable", reason=str(exc))
    except ProviderLookupError as exc:
        fields.update(result="refused", reason=str(exc))
    except RedisError as exc:
        fields.update(result="redis_unavailable", reason=exc.__class__.__name__)
    except Exception as exc:  # a bug, or a record the code cannot read: nothing committed
        fields.update(result="failed", error_class=exc.__class__.__name__)
        log.exception("task.failed", extra=fields)
    finally:
        if held:
            try:
                lease.release()
            except RedisError:
                pass  # it lapses by itself
    fields["seconds"] = round(time.monotonic() - started, 3)
    ok = fields["result"] == "ok"
    metrics.task_run(task.name, fields["result"], at=time.time() if ok else None)
    if ok:
        log.info("task.done", extra=fields)
    elif fields["result"] != "failed":
        log.warning(f"task.{fields['result']}", extra=fields)
    return fields
