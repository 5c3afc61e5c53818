"""EziDebit's sample for `send-test`: Ezidebit sends nothing, so the sample is a settled
payment registered with the dev sandbox's stand-in, which the next poll finds."""

from __future__ import annotations

from collections.abc import Mapping

from payhooks.providers.ezidebit.formats import PAID
from payhooks.providers.ezidebit.stand_in import API_PATH, DIGITAL_KEY
from payhooks.providers.kit.samples import DevSandbox, Sample, SampleRequest

#: How often `payhooks dev` polls its stand-in, so a send-test is paid within seconds.
DEV_POLL_SECONDS = "5"


def for_send_test(request: SampleRequest) -> Sample:
    answer = request.to_sandbox(
        "ezidebit/payments", {"invoice": str(request.invoice), "amount": str(request.amount)}
    )
    payment_id = str(answer.json()["PaymentID"])
    return Sample(
        f"settled payment {payment_id}, {request.amount}, PaymentReference {request.invoice}: "
        "the next poll of GetPayments finds it (every "
        f"{request.env.get('EZIDEBIT_POLL_SECONDS') or DEV_POLL_SECONDS} s in payhooks dev)",
        registered=answer,
        event_ids=(f"{payment_id}-{PAID}",),
    )


def dev_environment(sandbox: DevSandbox, env: Mapping[str, str]) -> dict[str, str]:
    return {
        "EZIDEBIT_DIGITAL_KEY": DIGITAL_KEY,
        "EZIDEBIT_API_URL": f"{sandbox.url}{API_PATH}",
        "EZIDEBIT_POLL_SECONDS": DEV_POLL_SECONDS,
        "EZIDEBIT_CURRENCY": "EUR",  # the sandbox's invoices are in euros
    }
