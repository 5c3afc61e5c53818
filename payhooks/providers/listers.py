"""Each provider's lister, by its name: where reconciliation finds them (the `payhooks
reconcile` command and the scheduled reconcile, workers/reconcile.py), and, for a provider
with none, why.

A lister reads the provider's own list of events for a window of time and turns each into
the events its webhook would have given (kit/listing.py).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from payhooks.providers.authorizenet.lister import AuthorizeNetLister
from payhooks.providers.braintree.lister import BraintreeLister
from payhooks.providers.ezidebit.lister import EziDebitLister
from payhooks.providers.forte.lister import ForteLister
from payhooks.providers.gocardless.lister import GoCardlessLister
from payhooks.providers.kit.listing import Lister, ListerFactory, NotListed
from payhooks.providers.paypal.lister import PayPalLister
from payhooks.providers.spreedly.lister import SpreedlyLister
from payhooks.providers.stripe.lister import StripeLister
from payhooks.settings import Settings

__all__ = ["LISTERS", "ON_DEMAND_ONLY", "UNLISTED", "build_listers"]

LISTERS: Mapping[str, ListerFactory] = {
    "stripe": StripeLister.from_settings,
    "gocardless": GoCardlessLister.from_settings,
    "braintree": BraintreeLister.from_settings,
    "authorizenet": AuthorizeNetLister.from_settings,
    "paypal": PayPalLister.from_settings,
    "spreedly": SpreedlyLister.from_settings,
    "ezidebit": EziDebitLister.from_settings,
    "forte": ForteLister.from_settings,
}

#: Listers run when asked (`payhooks reconcile`, `payhooks audit`), never scheduled: the
#: provider's poll already reads an overlapping week every run.
ON_DEMAND_ONLY = frozenset({"ezidebit"})

#: Why a provider without a lister is skipped: what its API allows.
UNLISTED: Mapping[str, str] = {
    "paypal-ipn": "IPN has no list of past notifications (reconcile PayPal's REST events)",
    "liqpay": "LiqPay has only a per-order status call, no list of payments",
    "epay": "ePay has only a per-order status call, no list of payments",
    "generic": "operators' own systems have no API we can ask",
}


def build_listers(
    settings: Settings,
    names: Iterable[str] | None = None,
    table: Mapping[str, ListerFactory] = LISTERS,
) -> tuple[dict[str, Lister], dict[str, str]]:
    """The listers of ``names`` (default: every provider the settings enable), and, for
    each that cannot be reconciled here, why."""
    # Every provider with an intake on: a poll-only one (EziDebit) has a list too.
    enabled = [name.partition("/")[0] for name in settings.configured_providers()]
    wanted = list(dict.fromkeys(names if names is not None else enabled))
    listers: dict[str, Lister] = {}
    skipped: dict[str, str] = {}
    for name in wanted:
        build = table.get(name)
        if build is None:
            skipped[name] = UNLISTED.get(name, "no such provider")
            continue
        try:
            listers[name] = build(settings)
        except NotListed as exc:
            skipped[name] = str(exc)
    return listers, skipped
