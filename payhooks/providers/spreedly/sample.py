"""Spreedly sample callbacks, shaped like the signed example of Spreedly's "Signed
Requests" page: a ``<transactions>`` document, each transaction signed with sha1 over
``amount callback_url created_at currency_code ip on_test_gateway order_id state succeeded
token transaction_type updated_at``."""

from __future__ import annotations

from collections.abc import Mapping
from xml.sax.saxutils import escape

from payhooks.providers.kit.samples import DevSandbox, Sample, SampleRequest, exported_or
from payhooks.providers.spreedly.formats import signature_of
from payhooks.providers.spreedly.stand_in import ACCESS_SECRET, API_PATH, ENVIRONMENT_KEY

# Not a secret: the signing secret of `payhooks dev`, known to `send-test`.
DEV_SIGNING_SECRET = "payhooks-dev-only-spreedly-signing-secret"  # noqa: S105
SIGNED_FIELDS = (
    "amount callback_url created_at currency_code ip on_test_gateway order_id state "
    "succeeded token transaction_type updated_at"
)


def transaction_xml(
    values: Mapping[str, str | None],
    secret: str,
    *,
    fields: str = SIGNED_FIELDS,
    algorithm: str = "sha1",
) -> str:
    """One ``<transaction>``: each value an element (None: ``nil="true"``), signed."""
    elements = "".join(
        f'<{name} nil="true"></{name}>' if value is None else f"<{name}>{escape(value)}</{name}>"
        for name, value in values.items()
    )
    message = "|".join(values.get(name) or "" for name in fields.split())
    signature = signature_of(secret, algorithm, message)
    return (
        f"<transaction>{elements}<signed><signature>{signature}</signature>"
        f"<fields>{fields}</fields><algorithm>{algorithm}</algorithm></signed></transaction>"
    )


def callback(*transactions: str) -> bytes:
    return f"<transactions>{''.join(transactions)}</transactions>".encode()


def values_for(record: Mapping[str, object]) -> dict[str, str | None]:
    """The signed fields of a stand-in record, as Spreedly writes them in a callback."""
    return {
        "amount": str(record["amount"]),
        "on_test_gateway": str(record["on_test_gateway"]).lower(),
        "created_at": str(record["created_at"]),
        "updated_at": str(record["updated_at"]),
        "currency_code": str(record["currency_code"]),
        "succeeded": str(record["succeeded"]).lower(),
        "state": str(record["state"]),
        "token": str(record["token"]),
        "transaction_type": str(record["transaction_type"]),
        "order_id": str(record["order_id"]),
        "ip": None,
        "callback_url": "https://payhooks.example/webhooks/spreedly",
    }


def for_send_test(request: SampleRequest) -> Sample:
    # The job reads the transaction back from the API: register it with the sandbox first.
    record = request.to_sandbox(
        "spreedly/transactions",
        {
            "invoice": str(request.invoice),
            "amount": str(request.amount),
            "currency": request.currency,
        },
    ).json()
    secret = request.secret("SPREEDLY_SIGNING_SECRETS", DEV_SIGNING_SECRET)
    return Sample(
        f"Purchase {record['token']} succeeded, {request.amount} {request.currency}, "
        f"order_id {request.invoice}",
        callback(transaction_xml(values_for(record), secret)),
        {"Content-Type": "application/xml"},
    )


def dev_environment(sandbox: DevSandbox, env: Mapping[str, str]) -> dict[str, str]:
    return {
        "SPREEDLY_SIGNING_SECRETS": exported_or(
            env, "SPREEDLY_SIGNING_SECRETS", DEV_SIGNING_SECRET
        ),
        "SPREEDLY_ENVIRONMENT_KEY": ENVIRONMENT_KEY,
        "SPREEDLY_ACCESS_SECRET": ACCESS_SECRET,
        "SPREEDLY_API_URL": f"{sandbox.url}{API_PATH}",
    }
