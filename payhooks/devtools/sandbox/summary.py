"""What the sandbox's invoices look like now, readable: ``GET /_sandbox/invoices``.

``/_sandbox/state`` is every record whole (and every call); a person trying payhooks out
wants per invoice its total, whether it is paid and since when, and the tokens on it.
JSON by default; ``?summary`` is a plain-text table for ``curl``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from payhooks.devtools.sandbox.nexudus import SandboxState


def invoices(state: SandboxState) -> list[dict[str, Any]]:
    """Per invoice, in Id order: its money, PaidOn, and its payment tokens with their notes."""
    tokens: dict[int, list[dict[str, Any]]] = {}
    for token in state.tokens.values():
        tokens.setdefault(int(token["CoworkerInvoiceId"]), []).append(
            {
                "Token": token.get("Token"),
                "RegularPaymentProvider": token.get("RegularPaymentProvider"),
                "Notes": token.get("Notes"),
            }
        )
    return [
        {
            "Id": record["Id"],
            "InvoiceNumber": record.get("InvoiceNumber"),
            "TotalAmount": record.get("TotalAmount"),
            "CurrencyCode": record.get("CurrencyCode"),
            "PaidOn": record.get("PaidOn"),
            "Tokens": tokens.get(int(record["Id"]), []),
        }
        for _, record in sorted(state.invoices.items())
    ]


def as_text(rows: list[dict[str, Any]]) -> str:
    """One line per invoice; its tokens as ``token (provider value)``."""
    lines = [("ID", "NUMBER", "TOTAL", "PAID_ON", "TOKENS")]
    for row in rows:
        lines.append(
            (
                str(row["Id"]),
                str(row["InvoiceNumber"] or ""),
                f"{float(row['TotalAmount'] or 0):.2f} {row['CurrencyCode'] or ''}".strip(),
                str(row["PaidOn"] or "not paid"),
                ", ".join(f"{t['Token']} ({t['RegularPaymentProvider']})" for t in row["Tokens"])
                or "-",
            )
        )
    widths = [max(len(line[i]) for line in lines) for i in range(4)]
    return "".join(
        "  ".join(cell.ljust(widths[i]) for i, cell in enumerate(line[:4])) + "  " + line[4] + "\n"
        for line in lines
    )
