"""ePay's currency codes: its callbacks and its web service name currencies by ISO 4217 number."""

# ISO 4217 numeric codes ePay sends, for the currencies its merchants use.
CURRENCIES = {
    "208": "DKK",
    "978": "EUR",
    "826": "GBP",
    "840": "USD",
    "752": "SEK",
    "578": "NOK",
    "756": "CHF",
    "985": "PLN",
    "036": "AUD",
    "124": "CAD",
    "352": "ISK",
    "203": "CZK",
    "348": "HUF",
    "392": "JPY",
    "554": "NZD",
}
#: The other way round, for what the job asks ePay's web service and for `send-test`.
NUMERIC_CODES = {alpha: numeric for numeric, alpha in CURRENCIES.items()}
