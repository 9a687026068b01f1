"""Demo mobile-money agents: a few thousand cash-in/cash-out points around Dakar, Abidjan and Accra,
the same every time (a seeded generator), with a float and a low-float threshold each; a few are
below it, so the alert list shows `agent_low_float`. Also what bench/agents.py loads (100,000).
`demo_agent_sales` gives some of them cash-in / cash-out transactions over the last 30 days (the
demo records them through POST /agents/transactions), so the map shows 30-day sales.

Agents cluster like real ones: most near a city's centre (a normal spread of a few km), the rest
along the suburbs (up to ~30 km out).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

DEMO_AGENT_PREFIX = "agt_demo_"
DEMO_AGENT_SEED = 77
DEMO_AGENT_COUNT = 3000
DEMO_SALES_AGENTS = 400  # the demo agents with cash-in / cash-out sales (every n-th one)
DEMO_SALES_PER_AGENT = (1, 6)  # transactions each, over the last 30 days


@dataclass(frozen=True)
class City:
    name: str
    country: str
    currency: str
    lat: float
    lon: float
    operators: tuple[str, ...]
    float_range: tuple[int, int]  # minor units (XOF and GHS: XOF has 0 decimals, GHS 2)


CITIES = (
    City("Dakar", "SN", "XOF", 14.7167, -17.4677, ("orange", "wave", "free"), (50_000, 5_000_000)),
    City("Abidjan", "CI", "XOF", 5.3600, -4.0083, ("orange", "mtn", "moov", "wave"), (50_000, 5_000_000)),
    City("Accra", "GH", "GHS", 5.6037, -0.1870, ("mtn", "vodafone", "airteltigo"), (50_000, 2_000_000)),
)

_SHOPS = ("Boutique", "Kiosque", "Cash Point", "Alimentation", "Quincaillerie", "Telecentre", "Pharmacie", "Chop Bar")
_NAMES = ("Diallo", "Ndiaye", "Kouassi", "Traoré", "Mensah", "Owusu", "Fall", "Koné", "Boateng", "Sow", "Yao", "Asante")


def _point(rng: random.Random, city: City) -> tuple[float, float]:
    spread_km = rng.gauss(0, 4) if rng.random() < 0.8 else rng.uniform(-30, 30)
    bearing = rng.uniform(0, 2 * math.pi)
    d_lat = spread_km * math.cos(bearing) / 111.32
    d_lon = spread_km * math.sin(bearing) / (111.32 * math.cos(math.radians(city.lat)))
    return round(city.lat + d_lat, 6), round(city.lon + d_lon, 6)


def demo_agents(count: int = DEMO_AGENT_COUNT, *, seed: int = DEMO_AGENT_SEED, prefix: str = DEMO_AGENT_PREFIX,
                merchant_for: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """`count` agents spread over CITIES, each with one float (and threshold) in its city's currency.
    `merchant_for` maps a country to the merchant whose agents a share of that country's are."""
    rng = random.Random(seed)
    out = []
    for i in range(count):
        city = CITIES[i % len(CITIES)]
        lat, lon = _point(rng, city)
        low, high = city.float_range
        threshold = rng.choice((100_000, 200_000, 250_000))
        amount = rng.randint(low, high)
        if rng.random() < 0.03:  # a few are running dry
            amount = rng.randint(0, threshold - 1)
        merchant = (merchant_for or {}).get(city.country) if rng.random() < 0.25 else None
        out.append({
            "id": f"{prefix}{i:06d}", "name": f"{rng.choice(_SHOPS)} {rng.choice(_NAMES)}",
            "lat": lat, "lon": lon, "operator": rng.choice(city.operators), "merchant_id": merchant,
            "country": city.country, "city": city.name,
            "status": "active" if rng.random() < 0.95 else rng.choice(("suspended", "closed")),
            "floats": [{"currency": city.currency, "amount_minor": amount, "low_threshold_minor": threshold}],
        })
    return out


def demo_agent_sales(agents: list[dict[str, Any]], now: datetime, *, seed: int = DEMO_AGENT_SEED,
                     with_sales: int = DEMO_SALES_AGENTS) -> list[dict[str, Any]]:
    """Cash-in / cash-out transactions at `with_sales` of the active `agents` (spread over the
    list), in each agent's float currency, at times in the 30 days before `now` (timezone-aware).
    The same agents and amounts every time; the ids carry `now`'s date, so a demo started on a
    later day adds that day's (an agent's 30-day sales do not age out while the demo is in use)."""
    rng = random.Random(f"{seed}:sales")
    active = [a for a in agents if a.get("status", "active") == "active"]
    step = max(1, len(active) // max(1, with_sales))
    out = []
    for a in active[::step][:with_sales]:
        currency = a["floats"][0]["currency"]
        scale = 100 if currency == "GHS" else 1  # GHS has 2 decimals, XOF none
        for k in range(rng.randint(*DEMO_SALES_PER_AGENT)):
            kind = rng.choice(("cash_in", "cash_in", "cash_out"))
            amount = rng.randrange(1_000, 200_000, 500) if scale == 1 else rng.randint(5, 2_000) * scale
            at = now - timedelta(seconds=rng.randint(60, 29 * 86_400))
            out.append({"id": f"agtx_demo_{now:%Y%m%d}_{a['id']}_{k}", "agent_id": a["id"], "kind": kind,
                        "amount_minor": amount, "currency": currency, "occurred_at": at.isoformat()})
    return out
