"""`payhooks send-test`: post a correctly signed sample webhook to a running receiver."""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Mapping
from decimal import Decimal, InvalidOperation

import httpx

from payhooks.cli.cli_output import CommandError, emit, report_error
from payhooks.cli.dev_state import DevInstance
from payhooks.devtools.samples.sending import Sample, SampleRequest
from payhooks.domain.providers import BY_NAME, load

DEFAULT_URL = "http://127.0.0.1:8080"
DEFAULT_SANDBOX_URL = "http://127.0.0.1:8090"


def send_test(
    args: argparse.Namespace,
    *,
    env: Mapping[str, str] | None = None,
    dev: DevInstance | None = None,
) -> int:
    """Send one signed sample; next to a running `payhooks dev`, to it, with its secrets."""
    args.env = os.environ if env is None else env
    args.url = args.url or (dev.receiver_url if dev else DEFAULT_URL)
    args.sandbox_url = args.sandbox_url or (dev.sandbox_url if dev else DEFAULT_SANDBOX_URL)
    try:
        amount = Decimal(args.amount)
    except InvalidOperation:
        return report_error(
            CommandError(
                f"--amount must be a number such as 100.00, got {args.amount!r}",
                code="usage",
                exit_code=2,
            ),
            as_json=args.json,
        )
    try:
        method, url, summary, response = _send(args, amount)
    except httpx.HTTPStatusError as exc:  # the sandbox refused to register the sample
        return report_error(
            CommandError(
                f"{exc.request.url} answered {exc.response.status_code}", code="sandbox_refused"
            ),
            as_json=args.json,
        )
    except httpx.RequestError as exc:
        return report_error(
            CommandError(
                f"could not reach {exc.request.url}: {exc.__class__.__name__}; "
                "is `payhooks dev` running?",
                code="unreachable",
            ),
            as_json=args.json,
        )
    if args.json:
        emit(
            {
                "method": method,
                "url": url,
                "sent": summary,
                "status": response.status_code,
                "answer": _answer(response),
            }
        )
    else:
        print(f"{method} {url} ({summary}) -> {response.status_code} {response.text}")
    return 0 if response.is_success else 1


def _send(args: argparse.Namespace, amount: Decimal) -> tuple[str, str, str, httpx.Response]:
    path = f"generic/{args.source}" if args.provider == "generic" else args.provider
    url = f"{args.url.rstrip('/')}/webhooks/{path}"
    # The provider's own sample builds (and, where its job asks an API, registers) it.
    build: Callable[[SampleRequest], Sample] = load(BY_NAME[args.provider].sample)
    sample = build(
        SampleRequest(
            invoice=args.invoice,
            amount=amount,
            currency=args.currency,
            method=args.method,
            source=args.source,
            env=args.env,
            sandbox_url=args.sandbox_url,
        )
    )
    if sample.query is not None:
        response = httpx.get(f"{url}?{sample.query}", timeout=10)
    else:
        response = httpx.post(url, content=sample.body, headers=sample.headers, timeout=10)
    return sample.method, url, sample.summary, response


def _answer(response: httpx.Response) -> object:
    try:
        return response.json()
    except ValueError:
        return response.text
