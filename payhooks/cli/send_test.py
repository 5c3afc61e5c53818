"""`payhooks send-test`: post a correctly signed sample webhook to a running receiver."""

from __future__ import annotations

import argparse
import os
import warnings
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

import httpx

from payhooks.cli.cli_output import CommandError, emit, labelled, report_error
from payhooks.cli.dev_state import DevInstance
from payhooks.devtools.samples import authorizenet as authorizenet_samples
from payhooks.devtools.samples import braintree as braintree_samples
from payhooks.devtools.samples import epay as epay_samples
from payhooks.devtools.samples import generic as generic_samples
from payhooks.devtools.samples import gocardless as gocardless_samples
from payhooks.devtools.samples import liqpay as liqpay_samples
from payhooks.devtools.samples import paypal as paypal_samples
from payhooks.devtools.samples import stripe as stripe_samples
from payhooks.devtools.sandbox.paypal import CERT_PATH as PAYPAL_CERT_PATH
from payhooks.domain.money import to_minor_units
from payhooks.domain.provider_formats.epay import NUMERIC_CODES
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
    args.signed_with = {}
    try:
        method, url, summary, body, headers, response = _send(args, amount)
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
    event_keys = _event_keys(args, body, headers)
    if args.json:
        emit(
            {
                "method": method,
                "url": url,
                "sent": summary,
                "status": response.status_code,
                "answer": _answer(response),
                "event_keys": event_keys,
            }
        )
    else:
        print(f"{method} {url} -> {response.status_code}")
        print(labelled("answer", response.text, width=7, indent="  "))
        print(labelled("sent", summary, width=7, indent="  "))
        for event_key in event_keys:
            print(labelled("trace", f"payhooks trace {event_key}", width=7, indent="  "))
    return 0 if response.is_success else 1


def _event_keys(args: argparse.Namespace, body: bytes, headers: dict[str, str]) -> list[str]:
    """The events of the sample as `trace` finds them: read by the receiver's own
    normaliser, built with what the sample was signed with (a provider's event id is not
    always what its payload calls an id: LiqPay's is the payment and its status)."""
    from service.providers import build_providers

    try:
        with warnings.catch_warnings():  # e.g. the cryptography's about a CA bundle's roots
            warnings.simplefilter("ignore")
            provider = build_providers(Settings.from_env(args.signed_with)).get(_path(args))
            found = provider.normalise(body, headers) if provider else []
    except Exception:  # noqa: BLE001 (the receiver's answer already says what it made of it)
        return []
    return [f"{_path(args)}:{item.event_id}" for item in found]


def _path(args: argparse.Namespace) -> str:
    return f"generic/{args.source}" if args.provider == "generic" else str(args.provider)


def _send(
    args: argparse.Namespace, amount: Decimal
) -> tuple[str, str, str, bytes, dict[str, str], httpx.Response]:
    """(method, URL, what was sent, body, headers, the receiver's answer); an ePay
    callback's body is its query, as the receiver reads it."""
    url = f"{args.url.rstrip('/')}/webhooks/{_path(args)}"
    if args.provider == "epay":
        query, summary = _epay(args, amount)
        answer = httpx.get(f"{url}?{query}", timeout=10)
        return "GET", url, summary, query.encode(), {}, answer
    build = {
        "gocardless": _gocardless,
        "liqpay": _liqpay,
        "generic": _generic,
        "braintree": _braintree,
        "authorizenet": _authorizenet,
        "paypal": _paypal,
        "paypal-ipn": _paypal_ipn,
        "stripe": _stripe,
    }[args.provider]
    body, headers, summary = build(args, amount)
    answer = httpx.post(url, content=body, headers=headers, timeout=10)
    return "POST", url, summary, body, headers, answer


def _answer(response: httpx.Response) -> object:
    try:
        return response.json()
    except ValueError:
        return response.text


def _secret(args: argparse.Namespace, variable: str, default: str) -> str:
    """The first configured value, else the dev one; noted as what the sample is signed with."""
    configured = [s.strip() for s in args.env.get(variable, "").split(",")]
    value = next((s for s in configured if s), default)
    args.signed_with[variable] = value
    return value


def _to_sandbox(args: argparse.Namespace, path: str, payload: dict[str, Any]) -> httpx.Response:
    """Tell the dev sandbox's provider stand-in about the sample payment the job will read."""
    answer = httpx.post(f"{args.sandbox_url.rstrip('/')}/_sandbox/{path}", json=payload, timeout=10)
    answer.raise_for_status()
    return answer


def _stripe(args: argparse.Namespace, amount: Decimal) -> tuple[bytes, dict[str, str], str]:
    intent = stripe_samples.payment_intent(
        invoice_id=args.invoice, amount=amount, currency=args.currency, method=args.method
    )
    event = stripe_samples.event("payment_intent.succeeded", intent, livemode=False)
    secret = _secret(args, "STRIPE_WEBHOOK_SECRETS", stripe_samples.DEV_WEBHOOK_SECRET)
    body, headers = stripe_samples.signed(event, secret)
    return (
        body,
        headers,
        (f"{event['type']}, {amount} {args.currency.upper()}, invoice {args.invoice}"),
    )


def _gocardless(args: argparse.Namespace, amount: Decimal) -> tuple[bytes, dict[str, str], str]:
    # The job reads the payment from the GoCardless API, so the sample payment is first
    # registered with the sandbox's GoCardless stand-in.
    payment = gocardless_samples.payment_id()
    _to_sandbox(
        args,
        "gocardless/payments",
        {
            "id": payment,
            "amount": to_minor_units(amount, args.currency),
            "currency": args.currency,
            "invoice_id": args.invoice,
        },
    )
    event = gocardless_samples.payment_event(payment, "confirmed")
    secret = _secret(args, "GOCARDLESS_WEBHOOK_SECRETS", gocardless_samples.DEV_WEBHOOK_SECRET)
    body, headers = gocardless_samples.signed([event], secret)
    return (
        body,
        headers,
        (
            f"payments/confirmed for payment {payment}, {amount} {args.currency.upper()}, "
            f"invoice {args.invoice}"
        ),
    )


def _liqpay(args: argparse.Namespace, amount: Decimal) -> tuple[bytes, dict[str, str], str]:
    payment = liqpay_samples.payment(
        order_id=str(args.invoice), amount=amount, currency=args.currency
    )
    key = _secret(args, "LIQPAY_PRIVATE_KEYS", liqpay_samples.DEV_PRIVATE_KEY)
    body, headers = liqpay_samples.signed(payment, key)
    return (
        body,
        headers,
        (
            f"status success for payment {payment['payment_id']}, {amount} "
            f"{args.currency.upper()}, order {args.invoice}"
        ),
    )


def _generic(args: argparse.Namespace, amount: Decimal) -> tuple[bytes, dict[str, str], str]:
    notification = generic_samples.notification(
        invoice_id=args.invoice, amount=f"{amount:.2f}", currency=args.currency.upper()
    )
    pairs = [p.partition(":") for p in args.env.get("GENERIC_WEBHOOK_SECRETS", "").split(",")]
    secret = next((s for source, _, s in pairs if source.strip() == args.source and s), None)
    secret = secret or generic_samples.DEV_SECRET
    args.signed_with["GENERIC_WEBHOOK_SECRETS"] = f"{args.source}:{secret}"
    body, headers = generic_samples.signed(notification, secret)
    return (
        body,
        headers,
        (
            f"bank transfer {notification['reference']}, {amount} {args.currency.upper()}, "
            f"invoice {args.invoice}"
        ),
    )


def _epay(args: argparse.Namespace, amount: Decimal) -> tuple[str, str]:
    currency = NUMERIC_CODES.get(args.currency.upper(), args.currency)
    parameters = epay_samples.callback(
        orderid=str(args.invoice),
        amount_minor=to_minor_units(amount, args.currency),
        currency=currency,
    )
    values = dict(parameters)
    # The job confirms the transaction with ePay: register it with the sandbox first.
    _to_sandbox(
        args,
        "epay/transactions",
        {key: values[key] for key in ("txnid", "orderid", "amount", "currency")},
    )
    secret = _secret(args, "EPAY_MD5_SECRETS", epay_samples.DEV_SECRET)
    return epay_samples.signed_query(parameters, secret), (
        f"callback for txnid {parameters[0][1]}, {amount} {args.currency.upper()}, "
        f"order {args.invoice}"
    )


def _braintree(args: argparse.Namespace, amount: Decimal) -> tuple[bytes, dict[str, str], str]:
    pair = _secret(args, "BRAINTREE_KEYS", "")
    public, _, private = pair.partition(":")
    if not private:
        public, private = braintree_samples.DEV_PUBLIC_KEY, braintree_samples.DEV_PRIVATE_KEY
    args.signed_with["BRAINTREE_KEYS"] = f"{public}:{private}"
    # The SDK wants one to parse with; a notification does not depend on it.
    args.signed_with["BRAINTREE_MERCHANT_ID"] = args.env.get("BRAINTREE_MERCHANT_ID") or "dev"
    xml = braintree_samples.transaction_notification(
        "transaction_settled",
        order_id=str(args.invoice),
        amount=amount,
        currency=args.currency.upper(),
    )
    body, headers = braintree_samples.signed(xml, public, private)
    return (
        body,
        headers,
        f"transaction_settled, {amount} {args.currency.upper()}, order {args.invoice}",
    )


def _authorizenet(args: argparse.Namespace, amount: Decimal) -> tuple[bytes, dict[str, str], str]:
    # The job confirms the transaction with the API: register it with the sandbox first.
    notification = authorizenet_samples.notification(amount=amount)
    transaction_id = notification["payload"]["id"]
    _to_sandbox(
        args,
        "authorizenet/transactions",
        {"id": transaction_id, "invoice_number": str(args.invoice), "amount": str(amount)},
    )
    key = _secret(args, "AUTHORIZENET_SIGNATURE_KEYS", authorizenet_samples.DEV_SIGNATURE_KEY)
    body, headers = authorizenet_samples.signed(notification, key)
    summary = (
        f"authcapture.created for transaction {transaction_id}, {amount}, invoice {args.invoice}"
    )
    return body, headers, summary


def _paypal(args: argparse.Namespace, amount: Decimal) -> tuple[bytes, dict[str, str], str]:
    # PayPal signs with its certificate's key: in dev, the sandbox holds the stand-in's.
    sandbox = args.sandbox_url.rstrip("/")
    event = paypal_samples.capture_event(
        invoice_id=str(args.invoice), amount=amount, currency=args.currency.upper()
    )
    body = paypal_samples.encoded(event)

    def sign(message: bytes) -> str:
        answer = _to_sandbox(args, "paypal/sign", {"message": message.decode()})
        return str(answer.json()["signature"])

    webhook_id = _secret(args, "PAYPAL_WEBHOOK_IDS", paypal_samples.DEV_WEBHOOK_ID)
    headers = paypal_samples.headers_for(body, webhook_id, sandbox + PAYPAL_CERT_PATH, sign)
    return (
        body,
        headers,
        f"PAYMENT.CAPTURE.COMPLETED, {amount}, invoice {args.invoice}",
    )


def _paypal_ipn(args: argparse.Namespace, amount: Decimal) -> tuple[bytes, dict[str, str], str]:
    receiver = _secret(args, "PAYPAL_IPN_RECEIVER_EMAILS", paypal_samples.DEV_RECEIVER_EMAIL)
    body = paypal_samples.ipn(
        invoice=str(args.invoice),
        amount=amount,
        currency=args.currency.upper(),
        receiver_email=receiver,
    )
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    return body, headers, f"IPN subscr_payment Completed, {amount}, invoice {args.invoice}"
