"""Amounts: minor units to Decimal major units by ISO 4217 exponent, and decimal strings."""

from decimal import Decimal, InvalidOperation

# Currencies whose minor unit is not 1/100. Stripe's list of zero-decimal currencies,
# plus the three-decimal ones; everything else has two decimals.
_ZERO_DECIMAL = frozenset(
    [
        "BIF",
        "CLP",
        "DJF",
        "GNF",
        "JPY",
        "KMF",
        "KRW",
        "MGA",
        "PYG",
        "RWF",
        "UGX",
        "VND",
        "VUV",
        "XAF",
        "XOF",
        "XPF",
    ]
)
_THREE_DECIMAL = frozenset(["BHD", "JOD", "KWD", "OMR", "TND"])


def exponent(currency: str) -> int:
    code = currency.upper()
    if code in _ZERO_DECIMAL:
        return 0
    if code in _THREE_DECIMAL:
        return 3
    return 2


def from_minor_units(amount: int, currency: str) -> Decimal:
    """``from_minor_units(1050, "eur") == Decimal("10.50")``; exact, never a float."""
    return Decimal(amount).scaleb(-exponent(currency))


def to_minor_units(amount: Decimal, currency: str) -> int:
    return int(amount.scaleb(exponent(currency)))


def finite_amount(value: object) -> Decimal | None:
    """A provider's decimal string (PayPal's amounts) as a number; None when absent or not a
    finite number ("NaN" and "Infinity" parse as Decimals, and NaN cannot even be compared
    with 0)."""
    if value is None:
        return None
    try:
        amount = Decimal(str(value))
    except InvalidOperation:
        return None
    return amount if amount.is_finite() else None
