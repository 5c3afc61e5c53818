"""`payhooks send-test`: post a correctly signed sample webhook to a running receiver (for a
provider with no webhook, register a payment with the sandbox for its next poll)."""

from __future__ import annotations

import argparse
import os
import warnings
from collections.abc import Callable, Mapping
from decimal import Decimal, InvalidOperation

import httpx

from payhooks.cli.cli_output import CommandError, emit, labelled, report_error
from payhooks.devtools.dev_state import DevInstance
from payhooks.providers.kit.samples import Sample, SampleRequest
from payhooks.providers.tools import TOOLS
from payhooks.settings import Settings

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
        method, url, request, sample, response = _send(args, amount)
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
    event_keys = _event_keys(args, request, sample)
    if args.json:
        emit(
            {
                "method": method,
                "url": url,
                "sent": sample.summary,
                "status": response.status_code,
                "answer": _answer(response),
                "event_keys": event_keys,
            }
        )
    else:
        print(f"{method} {url} -> {response.status_code}")
        print(labelled("answer", response.text, width=7, indent="  "))
        print(labelled("sent", sample.summary, width=7, indent="  "))
        for event_key in event_keys:
            print(labelled("trace", f"payhooks trace {event_key}", width=7, indent="  "))
    return 0 if response.is_success else 1


def _event_keys(args: argparse.Namespace, request: SampleRequest, sample: Sample) -> list[str]:
    """The events of the sample as `trace` finds them: read by the receiver's own
    normaliser, built with what the sample was signed with (a provider's event id is not
    always what its payload calls an id: LiqPay's is the payment and its status)."""
    from payhooks.providers.receivers import build_providers

    if sample.event_ids:  # polled: no receiver reads it
        return [f"{_path(args)}:{event_id}" for event_id in sample.event_ids]
    body = sample.query.encode() if sample.query is not None else sample.body
    try:
        with warnings.catch_warnings():  # e.g. the cryptography's about a CA bundle's roots
            warnings.simplefilter("ignore")
            provider = build_providers(Settings.from_env(request.signed_with)).get(_path(args))
            found = provider.normalise(body, sample.headers) if provider else []
    except Exception:  # noqa: BLE001 (the receiver's answer already says what it made of it)
        return []
    return [f"{_path(args)}:{item.event_id}" for item in found]


def _path(args: argparse.Namespace) -> str:
    return f"generic/{args.source}" if args.provider == "generic" else str(args.provider)


def _send(
    args: argparse.Namespace, amount: Decimal
) -> tuple[str, str, SampleRequest, Sample, httpx.Response]:
    url = f"{args.url.rstrip('/')}/webhooks/{_path(args)}"
    # The provider's own sample builds (and, where its job asks an API, registers) it.
    build: Callable[[SampleRequest], Sample] = TOOLS[args.provider].sample
    request = SampleRequest(
        invoice=args.invoice,
        amount=amount,
        currency=args.currency,
        method=args.method,
        source=args.source,
        env=args.env,
        sandbox_url=args.sandbox_url,
    )
    sample = build(request)
    if sample.registered is not None:  # no webhook: the sandbox keeps it for the next poll
        return "POST", str(sample.registered.request.url), request, sample, sample.registered
    target = f"{url}/{sample.url_token}" if sample.url_token else url
    if sample.query is not None:
        response = httpx.get(f"{target}?{sample.query}", timeout=10)
    else:
        response = httpx.post(target, content=sample.body, headers=sample.headers, timeout=10)
    # What is printed never shows the URL's secret.
    shown = f"{url}/***" if sample.url_token else url
    return sample.method, shown, request, sample, response


def _answer(response: httpx.Response) -> object:
    try:
        return response.json()
    except ValueError:
        return response.text
