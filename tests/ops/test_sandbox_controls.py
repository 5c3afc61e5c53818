"""The dev sandbox's controls (`payhooks dev`'s banner, the README's sandbox table) answer a
body they cannot use with a 400 naming what is wrong, never a 500 and a traceback in the
dev terminal; and keep serving."""

from __future__ import annotations

from typing import Any

import httpx
import pytest


@pytest.mark.parametrize(
    ("path", "body", "said"),
    [
        ("/_sandbox/gocardless/events", {"action": "confirmed"}, "missing field"),
        (
            "/_sandbox/authorizenet/transactions",
            {"id": "9001", "invoice_number": "42", "amount": "1,00"},
            "ValueError",
        ),
        ("/_sandbox/faults", {"no_such_field": 1}, "TypeError"),
        ("/_sandbox/invoices", "not json at all", ""),
    ],
)
def test_a_control_given_a_body_it_cannot_use_answers_400_and_says_why(
    sandbox: Any, path: str, body: Any, said: str
) -> None:
    sent = (
        httpx.post(f"{sandbox.url}{path}", content=body.encode())
        if isinstance(body, str)
        else httpx.post(f"{sandbox.url}{path}", json=body)
    )
    assert sent.status_code == 400, sent.text
    answer = sent.json()
    assert answer["error"] == "bad_control_request"
    assert said in answer["reason"]
    assert httpx.get(f"{sandbox.url}/_sandbox/state").status_code == 200
