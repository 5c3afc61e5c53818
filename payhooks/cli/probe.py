"""`payhooks check-config --probe`: reach what the configuration names, read-only.

Redis gets a PING; Nexudus a password grant (the token is thrown away, not cached);
each provider API credential one read-only call that needs it. Nothing here prints or
returns a secret: a result says what answered and how, by value, never by credential.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from xml.etree import ElementTree

import httpx
from redis.exceptions import RedisError

from payhooks.domain.providers import PROVIDERS, load
from payhooks.settings import Settings, redact_url
from payhooks.settings.authorizenet import AuthorizeNetSettings
from payhooks.settings.braintree import BraintreeSettings
from payhooks.settings.epay import EPaySettings
from payhooks.settings.forte import ForteSettings
from payhooks.settings.gocardless import GoCardlessSettings
from payhooks.settings.stripe import StripeSettings
from payhooks.storage import redis_connect

TIMEOUT_SECONDS = 5.0
STRIPE_API = "https://api.stripe.com"
GOCARDLESS_API = {
    "live": "https://api.gocardless.com",
    "sandbox": "https://api-sandbox.gocardless.com",
}
GOCARDLESS_VERSION = "2015-07-06"
BRAINTREE_API = {
    "production": "https://api.braintreegateway.com",
    "sandbox": "https://api.sandbox.braintreegateway.com",
}
#: An id no provider has: a "not found" answer proves the credential was accepted.
PROBE_ID = "PM000PAYHOOKSPROBE"


@dataclass(frozen=True, slots=True)
class ProbeResult:
    target: str
    ok: bool
    detail: str
    #: Nothing to call: not a failure, not a success.
    skipped: bool = False
    #: The answer proves the credentials were accepted; else the service only answered
    #: (`reachable`), as ePay does whatever the merchant number and password.
    proven: bool = True

    @property
    def result(self) -> str:
        if self.skipped:
            return "skipped"
        if not self.ok:
            return "FAILED"
        return "ok" if self.proven else "reachable"


#: One read-only call: its target and what makes it.
Check = tuple[str, Callable[[], ProbeResult]]


def probe(settings: Settings, http: httpx.Client | None = None) -> list[ProbeResult]:
    client = http or httpx.Client(timeout=TIMEOUT_SECONDS)
    checks: list[Check] = [
        ("Redis", lambda: _redis(settings)),
        ("Nexudus", lambda: _nexudus(settings, client)),
    ]
    for spec in PROVIDERS:
        if spec.probe is not None:
            checks += load(spec.probe)(settings.provider(load(spec.settings)), client)
    results = []
    for target, check in checks:
        try:
            results.append(check())
        except httpx.TimeoutException:
            results.append(ProbeResult(target, False, f"no answer in {TIMEOUT_SECONDS:g} s"))
        except httpx.HTTPError as exc:
            results.append(ProbeResult(target, False, f"unreachable ({exc.__class__.__name__})"))
    if http is None:
        client.close()
    return results


def _redis(settings: Settings) -> ProbeResult:
    if not settings.redis_url:
        return ProbeResult("Redis", False, "REDIS_URL is not set")
    where = redact_url(settings.redis_url)
    try:
        redis = redis_connect.sync_client(settings, socket_timeout=3, socket_connect_timeout=3)
        try:
            redis.ping()
        finally:
            redis.close()
    except RedisError as exc:
        return ProbeResult("Redis", False, f"could not reach {where} ({exc.__class__.__name__})")
    return ProbeResult("Redis", True, f"{where} answered PING")


def _nexudus(settings: Settings, http: httpx.Client) -> ProbeResult:
    if not (settings.nexudus_username and settings.nexudus_password):
        return ProbeResult("Nexudus", False, "NEXUDUS_USERNAME and NEXUDUS_PASSWORD are not set")
    url = f"{settings.nexudus_base_url}/api/token"
    answer = http.post(
        url,
        data={
            "grant_type": "password",
            "username": settings.nexudus_username,
            "password": settings.nexudus_password,
        },
    )
    if answer.status_code == 200 and _json(answer).get("access_token"):
        return ProbeResult(
            "Nexudus", True, f"{settings.nexudus_base_url} gave {settings.nexudus_username} a token"
        )
    error = _json(answer).get("error") or f"HTTP {answer.status_code}"
    return ProbeResult(
        "Nexudus",
        False,
        f"{settings.nexudus_base_url} refused {settings.nexudus_username} ({error})",
    )


def stripe_checks(section: StripeSettings, http: httpx.Client) -> list[Check]:
    if not section.api_key:
        return []
    return [("Stripe API key", partial(_stripe, section, http))]


def _stripe(section: StripeSettings, http: httpx.Client) -> ProbeResult:
    base = section.api_base or STRIPE_API
    return _unknown_id_lookup(
        http,
        "Stripe API key",
        f"{base}/v1/payment_intents/{PROBE_ID}",
        {"Authorization": f"Bearer {section.api_key}"},
        accepted=f"{base} accepted the key",
        refused={401: "key refused", 403: "the key may not read PaymentIntents"},
    )


def gocardless_checks(section: GoCardlessSettings, http: httpx.Client) -> list[Check]:
    if not section.access_token:
        return []
    return [("GoCardless access token", partial(_gocardless, section, http))]


def _gocardless(section: GoCardlessSettings, http: httpx.Client) -> ProbeResult:
    base = section.base_url or GOCARDLESS_API[section.environment]
    return _unknown_id_lookup(
        http,
        "GoCardless access token",
        f"{base}/payments/{PROBE_ID}",
        {
            "Authorization": f"Bearer {section.access_token}",
            "GoCardless-Version": GOCARDLESS_VERSION,
            "Accept": "application/json",
        },
        accepted=f"{base} accepted the token",
        refused={401: "token refused", 403: "token may not read payments"},
    )


def _unknown_id_lookup(
    http: httpx.Client,
    target: str,
    url: str,
    headers: dict[str, str],
    *,
    accepted: str,
    refused: dict[int, str],
) -> ProbeResult:
    """Read an id nobody has: "not found" can only come once the credential was accepted."""
    answer = http.get(url, headers=headers)
    return _by_status(target, answer, ok={200: accepted, 404: accepted}, refused=refused)


def authorizenet_checks(section: AuthorizeNetSettings, http: httpx.Client) -> list[Check]:
    if not (section.login_id and section.transaction_key):
        return []
    return [("Authorize.Net API login", partial(_authorizenet, section, http))]


def _authorizenet(section: AuthorizeNetSettings, http: httpx.Client) -> ProbeResult:
    request = {
        "getTransactionDetailsRequest": {
            "merchantAuthentication": {
                "name": section.login_id,
                "transactionKey": section.transaction_key,
            },
            "transId": "0",
        }
    }
    url = section.api_url
    answer = http.post(
        url, content=json.dumps(request), headers={"Content-Type": "application/json"}
    )
    try:
        body = json.loads(answer.content.decode("utf-8-sig"))  # the API sends a BOM
        message = body["messages"]["message"][0]
        code, text = str(message["code"]), str(message["text"])
    except (ValueError, KeyError, IndexError, TypeError):
        return ProbeResult("Authorize.Net API login", False, f"{url}: HTTP {answer.status_code}")
    # E00040 (no such transaction) can only come once the login was accepted.
    if code in ("I00001", "E00040"):
        return ProbeResult("Authorize.Net API login", True, f"{url} accepted the login")
    return ProbeResult("Authorize.Net API login", False, f"{url}: {code} {text}")


def forte_checks(section: ForteSettings, http: httpx.Client) -> list[Check]:
    """Listed, not called: Forte documents no read-only call that needs no location, and
    its locations are named only by its webhooks."""
    if not (section.api_access_id and section.api_secure_key):
        return []
    target = "Forte API credentials"
    detail = "not called: no read-only Forte call without a location; each job's lookup checks them"
    return [(target, lambda: ProbeResult(target, False, detail, skipped=True))]


def epay_checks(section: EPaySettings, http: httpx.Client) -> list[Check]:
    if not section.merchant_number:
        return []
    return [("ePay web service", partial(_epay, section, http))]


def _epay(section: EPaySettings, http: httpx.Client) -> ProbeResult:
    from workers.provider_steps.epay import NAMESPACE, gettransaction_request

    url = section.api_url
    answer = http.post(
        url,
        content=gettransaction_request(
            section.merchant_number or "", "0", section.api_password or ""
        ),
        headers={
            "Content-Type": "text/xml; charset=utf-8",
            "SOAPAction": f'"{NAMESPACE}/gettransaction"',
        },
    )
    try:
        root = ElementTree.fromstring(answer.content)  # noqa: S314 (our own configured service)
    except ElementTree.ParseError:
        return ProbeResult("ePay web service", False, f"{url}: HTTP {answer.status_code}")
    code = next((e.text for e in root.iter() if e.tag.endswith("epayresponse")), None)
    if answer.status_code != 200 or code is None:
        return ProbeResult("ePay web service", False, f"{url}: HTTP {answer.status_code}")
    # ePay answers an unknown transaction and a wrong merchant alike: the service answers,
    # but nothing here proves the merchant number and password are right.
    return ProbeResult(
        "ePay web service",
        True,
        f"{url} answered gettransaction for merchant {section.merchant_number} "
        f"(epayresponse {code}); the credentials are not proven: ePay answers a wrong "
        "merchant alike, each job's lookup checks them",
        proven=False,
    )


def braintree_checks(section: BraintreeSettings, http: httpx.Client) -> list[Check]:
    return [
        (
            f"Braintree key {number}",
            partial(_braintree, section, http, pair, f"Braintree key {number}"),
        )
        for number, pair in enumerate(section.keys, start=1)
    ]


def _braintree(
    section: BraintreeSettings, http: httpx.Client, pair: tuple[str, str], target: str
) -> ProbeResult:
    from payhooks.devtools.samples import braintree as samples

    if pair == (samples.DEV_PUBLIC_KEY, samples.DEV_PRIVATE_KEY):
        # `payhooks dev` signs its sample notifications with these; Braintree never saw them.
        return ProbeResult(target, False, "the dev sample keys: nothing to call", skipped=True)
    base = BRAINTREE_API[section.environment]
    merchant = section.merchant_id or ""
    answer = http.get(
        f"{base}/merchants/{merchant}/plans",
        auth=pair,
        headers={"X-ApiVersion": "6", "Accept": "application/xml"},
    )
    return _by_status(
        target,
        answer,
        ok={200: f"{base} listed plans of merchant {merchant}"},
        refused={
            401: "keys refused",
            403: "the keys may not read plans",
            404: f"no merchant {merchant} for these keys",
        },
    )


def _by_status(
    target: str, answer: httpx.Response, *, ok: dict[int, str], refused: dict[int, str]
) -> ProbeResult:
    status = answer.status_code
    if status in ok:
        return ProbeResult(target, True, ok[status])
    return ProbeResult(target, False, refused.get(status, f"answered HTTP {status}"))


def _json(answer: httpx.Response) -> dict[str, object]:
    try:
        body = answer.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}
