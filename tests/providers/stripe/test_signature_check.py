"""The receiver's answer to every Stripe-Signature header is the SDK's verdict, told in our
words (malformed, stale, mismatch), with rolled and blank secrets: the cases of
stripe-python's own tests/test_webhook.py (valid, wrong secret, no timestamp, no v1, a
valid header with another v1 after it, outside the tolerance) and the edges of its header
parsing.
"""

from __future__ import annotations

import hashlib
import hmac
import time

import pytest
import stripe

from payhooks.providers.kit.receiver_errors import InvalidSignature
from payhooks.providers.stripe.receiver import StripeWebhook
from payhooks.providers.stripe.settings import StripeSettings
from tests.support.settings import OLD_STRIPE_SECRET, STRIPE_SECRET

BODY = b'{\n  "id": "evt_test_webhook",\n  "object": "event"\n}'
TOLERANCE = 300


def sign(body: bytes, secret: str, timestamp: str) -> str:
    return hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


def sdk_verdict(body: bytes, header: str, secrets: tuple[str, ...]) -> str:
    """What payhooks concluded from the SDK before (each secret tried in turn)."""
    failure = "mismatch"
    for secret in secrets:
        try:
            stripe.WebhookSignature.verify_header(body.decode(), header, secret, TOLERANCE)
            return "ok"
        except stripe.SignatureVerificationError as exc:
            message = str(exc)
            if "tolerance" in message:
                failure = "stale"
            elif "Unable to extract" in message or "No signatures found with" in message:
                return "malformed"
    return failure


def our_verdict(body: bytes, header: str, secrets: tuple[str, ...]) -> str:
    receiver = StripeWebhook(
        StripeSettings(webhook_secrets=secrets, tolerance_seconds=TOLERANCE), "nexudus_invoice_id"
    )
    try:
        receiver.verify(body, {"Stripe-Signature": header})
    except InvalidSignature as exc:
        if "tolerance" in exc.message:
            return "stale"
        if "malformed" in exc.message:
            return "malformed"
        return "mismatch"
    return "ok"


def headers() -> dict[str, str]:
    """Every case, signed now (a module-level time would go stale in a long test run)."""
    now = str(int(time.time()))
    old = str(int(time.time()) - TOLERANCE - 60)
    good = sign(BODY, STRIPE_SECRET, now)
    rolled = sign(BODY, OLD_STRIPE_SECRET, now)
    v0 = "6ffbb59b2300aae63f272406069a9788598b792a944a07aba816edb039989a39"
    return {
        "valid": f"t={now},v1={good}",
        "valid, with a v0 entry": f"t={now},v1={good},v0={v0}",
        "valid, then another v1": f"t={now},v1={good},v1=bad_signature",
        "another v1, then valid": f"t={now},v1=bad_signature,v1={good}",
        "signed with the previous secret": f"t={now},v1={rolled}",
        "wrong signature": f"t={now},v1=bad_signature",
        "outside the tolerance": f"t={old},v1={sign(BODY, STRIPE_SECRET, old)}",
        "stale and wrong": f"t={old},v1=bad_signature",
        "no timestamp": f"v1={good}",
        "no v1": f"t={now},v0={good}",
        "timestamp not a number": f"t=abc,v1={good}",
        "bare t": f"t,v1={good}",
        "bare v1": f"t={now},v1",
        "bare t after a timestamp": f"t={now},t,v1={good}",
        "two timestamps, the first counts": f"t={now},t={old},v1={good}",
        "two timestamps, the second signed": f"t={old},t={now},v1={good}",
        "an '=' inside the signature": f"t={now},v1={good}=tail",
        "an '=' inside the timestamp": f"t={now}=1,v1={good}",
        "leading zeros (int of t is signed)": f"t=0{now},v1={sign(BODY, STRIPE_SECRET, '0' + now)}",
        "leading zeros, signed as int": f"t=0{now},v1={good}",
        "underscore in the timestamp": f"t={now[:3]}_{now[3:]},v1={good}",
        "spaces around the timestamp": f"t= {now} ,v1={good}",
        "space before the key": f" t={now},v1={good}",
        "empty entries": f",,t={now},,v1={good},",
        "empty": ",",
        "upper-case signature": f"t={now},v1={good.upper()}",
    }


@pytest.mark.parametrize("case", list(headers()))
@pytest.mark.parametrize(
    "secrets",
    [(STRIPE_SECRET,), (OLD_STRIPE_SECRET, STRIPE_SECRET), ("  ", STRIPE_SECRET)],
    ids=["one secret", "rolled secrets", "a blank secret"],
)
def test_the_verdict_is_the_sdks(case: str, secrets: tuple[str, ...]) -> None:
    header = headers()[case]
    assert our_verdict(BODY, header, secrets) == sdk_verdict(BODY, header, secrets)


def test_a_valid_header_passes_and_the_cases_cover_every_verdict() -> None:
    verdicts = {our_verdict(BODY, h, (STRIPE_SECRET,)) for h in headers().values()}
    assert verdicts == {"ok", "stale", "malformed", "mismatch"}


def test_a_body_that_is_not_utf8_is_refused_before_any_hmac() -> None:
    body = b'{"id": "\xff"}'
    now = str(int(time.time()))
    header = f"t={now},v1={sign(body, STRIPE_SECRET, now)}"
    with pytest.raises(InvalidSignature, match="not UTF-8"):
        StripeWebhook(StripeSettings(webhook_secrets=(STRIPE_SECRET,)), "k").verify(
            body, {"Stripe-Signature": header}
        )
