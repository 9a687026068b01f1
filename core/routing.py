"""Rail selection: for now a simple rule, method + currency (+ priority) -> rail, one connector.

The Rails issue replaces this with cost/SLA routing over connector health, pauses and overrides.
"""

from __future__ import annotations

from core.errors import Unprocessable

# method -> currencies it can carry
METHOD_CURRENCIES: dict[str, frozenset[str]] = {
    "sepa": frozenset({"EUR"}),
    "ach": frozenset({"USD"}),
    "wire": frozenset({"USD", "EUR", "GBP", "CHF", "BHD", "INR"}),
    "faster_payments": frozenset({"GBP"}),
    "mobile_money": frozenset({"XOF", "XAF", "GHS", "KES"}),
}

DEFAULT_CONNECTOR = "sandbox"

UnsupportedCurrency = type("UnsupportedCurrencyError", (Unprocessable,), {"type": "unsupported_currency"})


def choose_rail(method: str, currency: str, priority: str) -> str:
    allowed = METHOD_CURRENCIES.get(method)
    if allowed is None:
        raise Unprocessable(f"unknown payout method {method!r}")
    if currency not in allowed:
        raise UnsupportedCurrency(
            f"method {method} does not carry {currency}; it carries {', '.join(sorted(allowed))}"
        )
    if method == "sepa" and priority in ("instant", "priority"):
        return "sepa_instant"
    return method


def explain(method: str, currency: str, priority: str) -> dict:
    rail = choose_rail(method, currency, priority)
    return {
        "rule": "method+currency",
        "rail": rail,
        "connector": DEFAULT_CONNECTOR,
        "why": f"{method} in {currency} at {priority} priority goes by {rail} through {DEFAULT_CONNECTOR}",
    }
