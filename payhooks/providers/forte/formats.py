"""What Forte's transactions say: status, response code and money.

Forte (REST API v3) describes a transaction by ``status`` (lower case on the wire) and a
``response`` whose ``response_code`` is ``A01`` only for an approved one. A card sale is
``ready`` once approved and ``settled`` once paid out; an eCheck sale goes ``ready`` ->
``settling`` -> ``funded``, and may come back ``rejected`` or, after funding, ``unfunded``.
Sources: Forte's "Transaction Status Codes" and "Response Codes" (forte.net/devdocs/
reference/response_codes.htm; support.forte.net articles 11000053798 and 11000053799).
Transactions carry no currency: a location takes one (US dollars, rarely Canadian).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from payhooks.domain.events import PaymentKind, RegularPaymentProvider
from payhooks.domain.paid_dates import of_this_century

PROVIDER = "forte"
REGULAR_PAYMENT_PROVIDER = RegularPaymentProvider.FORTE
APPROVED = "A01"

TRANSACTION_ID = re.compile(r"trn_[A-Za-z0-9-]{1,64}")
LOCATION_ID = re.compile(r"loc_\d{1,12}")
STATUS = re.compile(r"[a-z]{1,20}")

#: A card sale's status -> what it means for the invoice.
CARD_SALE = {
    "ready": PaymentKind.PAID,  # approved, awaiting settlement: the member has paid
    "settled": PaymentKind.PAID,
    "review": PaymentKind.PENDING,  # held by a merchant configuration issue
    "declined": PaymentKind.FAILED,
    "failed": PaymentKind.FAILED,
    "voided": PaymentKind.FAILED,
}
#: An eCheck sale's: money has moved only once funded.
ECHECK_SALE = {
    "ready": PaymentKind.PENDING,
    "settling": PaymentKind.PENDING,
    "review": PaymentKind.PENDING,
    "funded": PaymentKind.PAID,
    "declined": PaymentKind.FAILED,
    "failed": PaymentKind.FAILED,
    "voided": PaymentKind.FAILED,
    "rejected": PaymentKind.FAILED,  # returned before funding: never paid
    "unfunded": PaymentKind.REFUNDED,  # returned after funding: the money went back
}


#: What ends the id of an event read from Forte's lists (a transaction in a status), where
#: a webhook's ends with its body's digest (32 hex digits): no body can give this one.
LISTED = "listed"


def listed_event_id(transaction_id: str, status: str) -> str:
    """The event of ``transaction_id`` in ``status`` as Forte's own record gives it."""
    return f"{transaction_id}:{status}:{LISTED}"


def payment_method(transaction: dict[str, Any]) -> str | None:
    """``card`` or ``echeck``, by the object the transaction carries; None when it carries
    neither or both (the answer's shape is not one we have seen)."""
    card = isinstance(transaction.get("card"), dict)
    echeck = isinstance(transaction.get("echeck"), dict)
    return None if card == echeck else "card" if card else "echeck"


def sale_kind(status: str, method: str | None) -> PaymentKind | None:
    """What a sale in ``status`` means, or None when it cannot be told: a status we do not
    know, or one that means different things for a card and an eCheck (``ready``) when
    the method is not known."""
    status = status.lower()
    if method == "card":
        return CARD_SALE.get(status)
    if method == "echeck":
        return ECHECK_SALE.get(status)
    meanings = {table[status] for table in (CARD_SALE, ECHECK_SALE) if status in table}
    return meanings.pop() if len(meanings) == 1 else None


def received_at(value: object) -> datetime | None:
    """Forte's dates come with or without fractions (up to 7 digits) and offsets:
    ``2017-10-11T09:12:10.5607107-07:00``, ``2017-03-06T06:52:18``, ``2012-06-23``."""
    if not isinstance(value, str) or len(value) > 64:
        return None
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        return None
    # .NET's "no date" is 0001-01-01: only a date of this century is one.
    if not of_this_century(when):
        return None
    return when if when.tzinfo else when.replace(tzinfo=UTC)
