"""`payhooks unprocessed list | show | replay | dismiss`: argument handling and output."""

from __future__ import annotations

import argparse
import json
import sys
import textwrap
from dataclasses import asdict

from redis.exceptions import RedisError

from payhooks.cli.cli_output import CommandError, emit, redis_unreachable, report_error
from payhooks.cli.ops import Ops
from payhooks.cli.tables import left_for, table
from payhooks.cli.unprocessed import SHORT_ID, UnprocessedWebhooks
from payhooks.settings import Settings
from payhooks.storage import redis_connect
from payhooks.storage.redis_keys import text


def run_unprocessed(settings: Settings, args: argparse.Namespace) -> int:
    redis_url = settings.require_redis()
    redis = redis_connect.sync_client(settings)
    webhooks = UnprocessedWebhooks(Ops(settings, redis))
    try:
        if args.action == "list":
            return _list(webhooks, as_json=args.json)
        if args.action == "show":
            return _show(webhooks, args.id, as_json=args.json)
        return _handle(webhooks, args.action, args.ids, as_json=args.json)
    except CommandError as exc:
        return report_error(exc, as_json=args.json)
    except LookupError as exc:
        return report_error(CommandError(exc.args[0], code="not_found"), as_json=args.json)
    except ValueError as exc:
        return report_error(CommandError(str(exc), code="usage", exit_code=2), as_json=args.json)
    except RedisError as exc:
        return report_error(redis_unreachable(redis_url, exc), as_json=args.json)
    finally:
        redis.close()


def _handle(
    webhooks: UnprocessedWebhooks, action: str, references: list[str], *, as_json: bool
) -> int:
    """Replay or dismiss each webhook named; every id is checked before any is touched."""
    found = [webhooks.find(reference) for reference in references]
    results = []
    status = 0
    for webhook in found:
        if action == "dismiss":
            webhooks.dismiss(webhook)
            done, lines = True, [f"{webhook.id[:SHORT_ID]}: dismissed"]
        else:
            done, lines = webhooks.replay(webhook)
        status = status if done else 1
        results.append({"id": webhook.id, "done": done, "lines": lines})
        if not as_json:
            print("\n".join(lines))
    if as_json:
        emit({"replayed" if action == "replay" else "dismissed": results})
    return status


def _list(webhooks: UnprocessedWebhooks, *, as_json: bool) -> int:
    found = webhooks.listed()
    if as_json:
        emit([asdict(w) for w in found])
        return 0
    if not found:
        print("no unprocessed webhooks")
        return 0
    rows = [{**asdict(w), "id": w.id[:SHORT_ID]} for w in found]
    columns = ("id", "provider", "source", "received_at", "reason")
    # Within 100 columns, the reason wrapped under itself, never cut (--json: one line).
    width = left_for(rows, columns, "reason")
    for row in rows:
        row["reason"] = "\n".join(textwrap.wrap(row["reason"], width, break_on_hyphens=False))
    table(rows, columns, sys.stdout)
    return 0


def _show(webhooks: UnprocessedWebhooks, reference: str, *, as_json: bool) -> int:
    webhook = webhooks.find(reference)
    stored = webhooks.stored(webhook)
    body = stored["body"]
    shown = text(body) if isinstance(body, bytes) and _is_text(body) else repr(body)
    if as_json:
        emit({**asdict(webhook), "headers": stored["headers"], "body": shown})
        return 0
    for name, value in asdict(webhook).items():
        print(f"{name:<12} {value}")
    print(f"{'headers':<12} {json.dumps(stored['headers'])}")
    print()
    print(shown)
    return 0


def _is_text(body: bytes) -> bool:
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True
