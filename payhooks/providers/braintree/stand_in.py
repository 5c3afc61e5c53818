"""A local stand-in for Braintree's transaction search, for tests and `payhooks dev`.

Serves what the official SDK calls, as the gateway answers it: XML over HTTP Basic auth
(public key, private key) under ``/merchants/<merchant id>/``.
``POST …/transactions/advanced_search_ids`` answers ``<search-results>`` (the ids, newest
first, and ``page-size`` 50), ``POST …/transactions/advanced_search`` with at most 50 of
those ids answers ``<credit-card-transactions>``. Criteria: the time ranges
``submitted_for_settlement_at``, ``settled_at`` and ``created_at``, ``type``, ``refund``
(a credit refunding a sale, or not), ``ids``; any other is refused (400), so a lister asking
for more than the stand-in knows fails loudly. The transactions are shaped like the SDK's
own samples (braintree-python's ``webhook_testing_gateway.py``, its ``transaction_settled``
sample), with a status history. A refund is a credit as braintree-python's integration
tests show one (tests/integration/test_transaction.py, ``test_successful_refund``,
``test_multiple_successful_partial_refunds``, ``test_refund_returns_an_error_if_hard_declined``):
``type`` credit, its own id and amount, ``refunded_transaction_id`` naming the sale, whose
``refund_ids`` list it; ``submitted_for_settlement`` when made, ``processor_declined``
when the card's processor refused it. As the gateway does, a refund is refused for a sale
not settled (or settling), for a credit, and for more than is left of the sale.
``void_transaction`` voids a transaction (a refund too) as the gateway does, only while
voidable ("Transaction: Void": authorized, submitted for settlement, or for PayPal
settlement pending; else 91504), and ``settle_transaction`` settles one.
Control: ``POST /_sandbox/braintree/transactions`` adds a transaction,
``POST /_sandbox/braintree/refunds`` (``{"id", "transaction", "amount"}``) refunds one.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from xml.sax.saxutils import escape

from aiohttp import web
from braintree.util.xml_util import XmlUtil

# Not secrets: the key pair and merchant of `payhooks dev`, known to `send-test`.
DEV_PUBLIC_KEY = "payhooks_dev_public"
DEV_PRIVATE_KEY = "payhooks_dev_only_private"
DEV_MERCHANT_ID = "payhooks_dev_merchant"

PAGE_SIZE = 50
RANGES = ("submitted_for_settlement_at", "settled_at", "created_at")
#: The status whose history entry gives each range's time.
RANGE_STATUS = {
    "submitted_for_settlement_at": "submitted_for_settlement",
    "settled_at": "settled",
}


@dataclass
class BraintreeState:
    #: Merchant id by (public key, private key).
    accounts: dict[tuple[str, str], str] = field(
        default_factory=lambda: {(DEV_PUBLIC_KEY, DEV_PRIVATE_KEY): DEV_MERCHANT_ID}
    )
    #: By id: the transaction's fields (transaction_record).
    transactions: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: What the next search calls answer: 200 as usual, else that status (a 429, a 503).
    faults: list[int] = field(default_factory=list)
    #: Each search call, as "advanced_search_ids" or "advanced_search <n ids>".
    requests: list[str] = field(default_factory=list)


BRAINTREE_STATE = web.AppKey("braintree_state", BraintreeState)


def transaction_record(
    transaction_id: str,
    *,
    order_id: str,
    amount: str,
    currency: str = "EUR",
    status: str = "settled",
    payment_instrument_type: str = "credit_card",
    subscription_id: str | None = None,
    at: datetime | None = None,
    refund_ids: tuple[str, ...] = (),
) -> dict[str, Any]:
    """A sale and its status history, every status reached at ``at`` (default: now)."""
    when = (at or datetime.now(tz=UTC)).astimezone(UTC).replace(microsecond=0)
    path = ["authorized", "submitted_for_settlement"]
    if status in ("settling", "settled", "settlement_declined"):
        path += ["settling", status] if status != "settling" else ["settling"]
    elif status not in path:
        path = [status]
    return {
        "id": transaction_id,
        "type": "sale",
        "status": status,
        "order_id": order_id,
        "amount": amount,
        "currency_iso_code": currency,
        "payment_instrument_type": payment_instrument_type,
        "subscription_id": subscription_id,
        "refund_ids": list(refund_ids),
        "created_at": when,
        "history": [(name, when) for name in path],
    }


#: Where a sale may be refunded (else Braintree answers 91506, "Cannot refund a
#: transaction unless it is settled").
REFUNDABLE = ("settling", "settled")


class RefundRefused(ValueError):
    """What Braintree's gateway answers a refund (or a void) it refuses: its validation
    error."""


def refund_record(
    state: BraintreeState,
    refund_id: str,
    sale_id: str,
    *,
    amount: str | None = None,
    status: str = "submitted_for_settlement",
    at: datetime | None = None,
    order_id: str = "",
) -> dict[str, Any]:
    """A refund of ``sale_id`` (all that is left of it by default), made as Braintree makes
    it: a credit naming the sale, added to the sale's ``refund_ids``."""
    sale = state.transactions.get(sale_id)
    if sale is None:
        raise RefundRefused(f"91503: no transaction {sale_id}")
    if sale["type"] != "sale":
        raise RefundRefused("91505: Cannot refund credit")
    if sale["status"] not in REFUNDABLE:
        raise RefundRefused("91506: Cannot refund a transaction unless it is settled")
    refunded = sum(
        (
            Decimal(state.transactions[i]["amount"])
            for i in sale["refund_ids"]
            if state.transactions[i]["status"] not in ("processor_declined", "voided")
        ),
        Decimal(0),
    )
    left = Decimal(sale["amount"]) - refunded
    wanted = Decimal(amount) if amount is not None else left
    if left <= 0:
        raise RefundRefused("91512: Transaction has already been completely refunded")
    if wanted > left:
        raise RefundRefused("91521: Refund amount is too large")
    when = (at or datetime.now(tz=UTC)).astimezone(UTC).replace(microsecond=0)
    record = {
        **sale,
        "id": refund_id,
        "type": "credit",
        "status": status,
        "order_id": order_id,
        "amount": f"{wanted:.2f}",
        "subscription_id": None,
        "refund_ids": [],
        "refunded_transaction_id": sale_id,
        "created_at": when,
        "history": [(status, when)],
    }
    state.transactions[refund_id] = record
    sale["refund_ids"].append(refund_id)
    return record


#: Where a transaction may be voided ("Transaction: Void", Braintree's API reference:
#: authorized, submitted for settlement, or, for PayPal, settlement pending); a refund is
#: a transaction, so one not settled yet may be voided as well.
VOIDABLE = ("authorized", "submitted_for_settlement")
VOIDABLE_PAYPAL = "settlement_pending"


def void_transaction(
    state: BraintreeState, transaction_id: str, *, at: datetime | None = None
) -> dict[str, Any]:
    """``transaction.void``: the transaction (a sale, a refund) ``voided`` at ``at``, as
    the gateway voids it, or refused (91504) once it is past voiding."""
    record = state.transactions[transaction_id]
    paypal = record["payment_instrument_type"] == "paypal_account"
    if record["status"] not in VOIDABLE and not (paypal and record["status"] == VOIDABLE_PAYPAL):
        raise RefundRefused(
            "91504: Transaction can only be voided if status is authorized, "
            "submitted_for_settlement, or - for PayPal - settlement_pending"
        )
    return _moved(record, "voided", at)


def settle_transaction(
    state: BraintreeState, transaction_id: str, *, at: datetime | None = None
) -> dict[str, Any]:
    """The transaction ``settled`` at ``at``, as Braintree's settlement batch leaves it."""
    return _moved(state.transactions[transaction_id], "settled", at)


def _moved(record: dict[str, Any], status: str, at: datetime | None) -> dict[str, Any]:
    when = (at or datetime.now(tz=UTC)).astimezone(UTC).replace(microsecond=0)
    record.update(status=status, history=[*record["history"], (status, when)])
    return record


def _time(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _xml(transaction: dict[str, Any]) -> str:
    """One ``<transaction>``, as the gateway writes it (dashes, typed elements)."""
    instrument = transaction["payment_instrument_type"]
    if instrument == "us_bank_account":
        details = (
            "<us-bank-account><routing-number>123456789</routing-number><last-4>1234</last-4>"
            "<account-type>checking</account-type>"
            "<account-holder-name>Dan Schulman</account-holder-name></us-bank-account>"
        )
    else:
        details = (
            "<credit-card><token>pm_token_1</token><bin>411111</bin><last-4>1111</last-4>"
            "<card-type>Visa</card-type><expiration-month>12</expiration-month>"
            "<expiration-year>2030</expiration-year></credit-card>"
        )
    subscription = transaction["subscription_id"]
    refunds = "".join(f"<item>{escape(i)}</item>" for i in transaction.get("refund_ids", []))
    history = "".join(
        f'<status-event><timestamp type="datetime">{_time(at)}</timestamp>'
        f"<status>{status}</status><amount>{transaction['amount']}</amount>"
        "<transaction-source>api</transaction-source></status-event>"
        for status, at in transaction["history"]
    )
    return (
        "<transaction>"
        f"<id>{escape(transaction['id'])}</id>"
        f"<status>{transaction['status']}</status>"
        f"<type>{transaction['type']}</type>"
        f"<currency-iso-code>{transaction['currency_iso_code']}</currency-iso-code>"
        f"<amount>{transaction['amount']}</amount>"
        f"<order-id>{escape(transaction['order_id'])}</order-id>"
        + (
            f"<refunded-transaction-id>{escape(refunded)}</refunded-transaction-id>"
            if (refunded := transaction.get("refunded_transaction_id"))
            else '<refunded-transaction-id nil="true"></refunded-transaction-id>'
        )
        + "<merchant-account-id>ogaotkivejpfayqfeaimuktty</merchant-account-id>"
        f"<payment-instrument-type>{instrument}</payment-instrument-type>"
        + (
            f"<subscription-id>{escape(subscription)}</subscription-id>"
            if subscription
            else '<subscription-id nil="true"></subscription-id>'
        )
        + f'<created-at type="datetime">{_time(transaction["created_at"])}</created-at>'
        f"{details}<tax-amount>0</tax-amount>"
        f'<refund-ids type="array">{refunds}</refund-ids>'
        f'<status-history type="array">{history}</status-history>'
        "</transaction>"
    )


def _answer(xml: str, status: int = 200) -> web.Response:
    return web.Response(
        status=status,
        body=('<?xml version="1.0" encoding="UTF-8"?>\n' + xml).encode(),
        content_type="application/xml",
    )


def _account(request: web.Request) -> str | None:
    """The merchant of the request's key pair, or None."""
    scheme, _, encoded = request.headers.get("Authorization", "").partition(" ")
    try:
        public, _, private = base64.b64decode(encoded, validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    accounts = request.app[BRAINTREE_STATE].accounts
    return accounts.get((public, private)) if scheme == "Basic" else None


async def _criteria(request: web.Request) -> dict[str, Any] | web.Response:
    state = request.app[BRAINTREE_STATE]
    fault = state.faults.pop(0) if state.faults else 200
    if fault != 200:
        return web.Response(status=fault)
    merchant = _account(request)
    if merchant is None:
        return web.Response(status=401)
    if merchant != request.match_info["merchant"]:
        return web.Response(status=403)  # the keys belong to another merchant
    search = XmlUtil.dict_from_xml(await request.text()).get("search") or {}
    unknown = set(search) - {*RANGES, "type", "refund", "ids"}
    if unknown:
        raise web.HTTPBadRequest(text=f"the stand-in does not search by {sorted(unknown)}")
    return dict(search)


def _matches(transaction: dict[str, Any], search: dict[str, Any]) -> bool:
    if "type" in search and transaction["type"] not in search["type"]:
        return False
    if "ids" in search and transaction["id"] not in search["ids"]:
        return False
    if "refund" in search and bool(transaction.get("refunded_transaction_id")) != (
        search["refund"] is True
    ):
        return False
    for name in RANGES:
        if name not in search:
            continue
        if name == "created_at":
            times = [transaction["created_at"]]
        else:
            times = [at for status, at in transaction["history"] if status == RANGE_STATUS[name]]
        bounds = search[name]
        low, high = bounds.get("min"), bounds.get("max")
        # The SDK sends UTC times without a zone. As Braintree documents its time ranges
        # ("Search fields"): the lower bound inclusive, the upper one exclusive once a
        # minute is added to it.
        if not any(
            (low is None or at >= low.replace(tzinfo=UTC))
            and (high is None or at < high.replace(tzinfo=UTC) + timedelta(minutes=1))
            for at in times
        ):
            return False
    return True


async def search_ids(request: web.Request) -> web.Response:
    search = await _criteria(request)
    if isinstance(search, web.Response):
        return search
    state = request.app[BRAINTREE_STATE]
    state.requests.append("advanced_search_ids")
    found = sorted(
        (t for t in state.transactions.values() if _matches(t, search)),
        key=lambda t: (t["created_at"], t["id"]),
        reverse=True,
    )
    ids = "".join(f"<item>{escape(t['id'])}</item>" for t in found)
    return _answer(
        f'<search-results><page-size type="integer">{PAGE_SIZE}</page-size>'
        f'<ids type="array">{ids}</ids></search-results>'
    )


async def search(request: web.Request) -> web.Response:
    criteria = await _criteria(request)
    if isinstance(criteria, web.Response):
        return criteria
    state = request.app[BRAINTREE_STATE]
    ids = criteria.get("ids") or []
    state.requests.append(f"advanced_search {len(ids)}")
    if not ids or len(ids) > PAGE_SIZE:
        raise web.HTTPBadRequest(text=f"advanced_search takes 1 to {PAGE_SIZE} ids")
    found = [t for t in state.transactions.values() if _matches(t, criteria)]
    return _answer(
        '<credit-card-transactions type="collection">'
        '<current-page-number type="integer">1</current-page-number>'
        f'<page-size type="integer">{PAGE_SIZE}</page-size>'
        f'<total-items type="integer">{len(found)}</total-items>'
        + "".join(_xml(t) for t in found)
        + "</credit-card-transactions>"
    )


async def add_transaction(request: web.Request) -> web.Response:
    body = await request.json()
    record = transaction_record(
        str(body["id"]),
        order_id=str(body.get("order_id", "")),
        amount=str(body["amount"]),
        currency=str(body.get("currency", "EUR")),
        status=str(body.get("status", "settled")),
        payment_instrument_type=str(body.get("payment_instrument_type", "credit_card")),
        subscription_id=body.get("subscription_id"),
    )
    request.app[BRAINTREE_STATE].transactions[record["id"]] = record
    return web.json_response({"id": record["id"], "status": record["status"]})


async def add_refund(request: web.Request) -> web.Response:
    body = await request.json()
    try:
        record = refund_record(
            request.app[BRAINTREE_STATE],
            str(body["id"]),
            str(body["transaction"]),
            amount=None if body.get("amount") is None else str(body["amount"]),
            status=str(body.get("status", "submitted_for_settlement")),
        )
    except RefundRefused as exc:
        return web.json_response({"error": str(exc)}, status=422)
    return web.json_response({"id": record["id"], "amount": record["amount"]})


def add_braintree_routes(app: web.Application, state: BraintreeState | None = None) -> None:
    app[BRAINTREE_STATE] = state or BraintreeState()
    merchant = "/merchants/{merchant}/transactions"
    app.router.add_post(f"{merchant}/advanced_search_ids", search_ids)
    app.router.add_post(f"{merchant}/advanced_search", search)
    app.router.add_post("/_sandbox/braintree/transactions", add_transaction)
    app.router.add_post("/_sandbox/braintree/refunds", add_refund)
