"""What a stand-in that confirms transactions keeps (Authorize.Net's, ePay's).

The worker asks the provider about each transaction before it records money; tests add the
transactions the provider would know and count how often the worker asked.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class TransactionBook:
    #: By the provider's transaction id, as its API answers them.
    transactions: dict[str, dict[str, Any]] = field(default_factory=dict)
    lookups: int = 0
