"""Demo data for a dev stack: merchants funded and paying out at a steady trickle (a few to the
sandbox bank's always-503 account, so they park in dlq), an ops action awaiting approval and the
provider syncs triggered, and a few thousand mobile-money agents (devstack/demo_agents.py). It
talks to the API over HTTP with dev tokens, as a user's client would.

`payops up` runs `python -m devstack.demo --api-url ...` next to the API; `payops demo --reset` removes
the demo merchants' data (and nothing else) and seeds again.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import random
import uuid
from dataclasses import dataclass
from datetime import datetime, time, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

import httpx
from schwifty import IBAN

from core.platform.auth_tokens import mint_dev_token
from devstack.demo_agents import DEMO_AGENT_PREFIX, demo_agent_sales, demo_agents
from core.platform.money import format_amount, parse_amount
from core.platform.settings import Settings, get_settings

log = logging.getLogger("payops.demo")

DEMO_PREFIX = "mer_demo_"
# The sandbox bank answers 503 forever to accounts ending in these digits (sandbox/bank.py).
ALWAYS_UNAVAILABLE_TAIL = "0036"
DEMO_OPS_SUB = "demo-olivia"  # the ops admin of the console's demo-user picker
DEMO_RESET_SUB = "demo-reset"
# The Vima and PayShack simulators serve the same payments (sandbox/world.py) of this seed, from the
# start of yesterday in the reconciliation's time zone: the daily run (yesterday) and a run of today
# find both sides, and PayShack's sync (its last `payshack_lookback_hours`, 48) reads all of it.
DEMO_WORLD_SEED = 22


def demo_world_since(settings: Settings, now: datetime | None = None) -> datetime:
    """The instant the demo's shared payments start: 00:00 yesterday in the reconciliation's zone."""
    tz = ZoneInfo(settings.reconciliation_timezone)
    today = (now or datetime.now(timezone.utc)).astimezone(tz).date()
    return datetime.combine(today - timedelta(days=1), time(0), tzinfo=tz)


@dataclass(frozen=True)
class DemoMerchant:
    id: str
    name: str
    currency: str
    country: str
    method: str
    funding: str  # major units
    amounts: tuple[int, int]  # payout amount range, major units

    def beneficiary(self, rng: random.Random, *, failing: bool) -> dict[str, Any]:
        tail = ALWAYS_UNAVAILABLE_TAIL if failing else f"{rng.randrange(100, 9999):04d}"
        if tail == ALWAYS_UNAVAILABLE_TAIL and not failing:
            tail = "1234"
        name = rng.choice(["Ada Lovelace", "Grace Hopper", "Alan Turing", "Amina Diallo", "Kwame Mensah", "Mary Jackson"])
        if self.method == "sepa":
            iban = IBAN.generate("DE", bank_code="37040044", account_code=f"053201{tail}")
            return {"name": name, "iban": str(iban.compact), "bic": "COBADEFFXXX"}
        if self.method == "faster_payments":
            return {"name": name, "sort_code": "040004", "account_number": f"1234{tail}"}
        if self.method == "mobile_money":
            return {"name": name, "phone": f"+22177123{tail}", "operator": rng.choice(["orange", "wave", "mtn"])}
        raise ValueError(f"no demo beneficiary for {self.method}")


DEMO_MERCHANTS = (
    DemoMerchant("mer_demo_lumen", "Lumen Coffee", "EUR", "FR", "sepa", "250000.00", (20, 900)),
    DemoMerchant("mer_demo_thames", "Thames Books", "GBP", "GB", "faster_payments", "120000.00", (10, 400)),
    DemoMerchant("mer_demo_baobab", "Baobab Telecom", "XOF", "SN", "mobile_money", "90000000", (5000, 250000)),
)


class DemoClient:
    """The demo's HTTP client: dev tokens for an ops admin and for each merchant."""

    def __init__(self, api_url: str, settings: Settings, *, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.settings = settings
        self.http = httpx.AsyncClient(base_url=api_url.rstrip("/") + "/api/v1", timeout=15.0, transport=transport)
        self.ops = self._auth(role="ops_admin", sub=DEMO_OPS_SUB)

    def _auth(self, **claims: Any) -> dict[str, str]:
        return {"Authorization": f"Bearer {mint_dev_token(self.settings, ttl_seconds=24 * 3600, **claims)}"}

    def merchant(self, m: DemoMerchant) -> dict[str, str]:
        return self._auth(role="merchant_admin", sub=f"demo-admin-{m.id}", merchant_id=m.id)

    async def aclose(self) -> None:
        await self.http.aclose()

    async def ensure_merchant(self, m: DemoMerchant) -> None:
        r = await self.http.get(f"/merchants/{m.id}", headers=self.ops)
        if r.status_code == 404:
            r = await self.http.post("/merchants", headers=self.ops, json={
                "id": m.id, "name": m.name, "default_currency": m.currency, "country": m.country,
                "metadata": {"demo": "true"}})
            if r.status_code not in (201, 409):
                r.raise_for_status()
            await self.fund(m, m.funding)

    async def fund(self, m: DemoMerchant, amount: str) -> None:
        r = await self.http.post(f"/merchants/{m.id}/funding", headers={**self.ops, "Idempotency-Key": uuid.uuid4().hex},
                                 json={"amount": amount, "currency": m.currency, "reference": "demo top-up"})
        r.raise_for_status()

    async def top_up_when_low(self, m: DemoMerchant) -> None:
        r = await self.http.get("/balances", headers=self.merchant(m))
        if r.status_code != 200:
            return
        available = sum(b["available_minor"] for b in r.json() if b["currency"] == m.currency)
        if available < parse_amount(m.funding, m.currency) // 5:
            await self.fund(m, m.funding)

    async def create_payout(self, m: DemoMerchant, rng: random.Random, *, failing: bool = False) -> dict | None:
        low, high = (parse_amount(str(a), m.currency) for a in m.amounts)
        amount = format_amount(rng.randint(low, high), m.currency)
        body = {"amount": amount, "currency": m.currency, "method": m.method,
                # the demo's payouts go now (a standard SEPA payout would wait for the 18:00 Paris cutoff)
                "priority": rng.choice(["instant", "instant", "priority"]) if m.method == "sepa" else "standard",
                "beneficiary": m.beneficiary(rng, failing=failing),
                "description": rng.choice(["Supplier invoice", "Payroll", "Refund", "Marketplace payout"]),
                "metadata": {"demo": "true"}}
        if m.method != "sepa":
            body.pop("priority")
        r = await self.http.post("/payouts", headers={**self.merchant(m), "Idempotency-Key": uuid.uuid4().hex}, json=body)
        if r.status_code in (200, 201):
            return r.json()
        log.info("demo payout for %s refused: %s %s", m.id, r.status_code, r.text[:200])
        return None

    async def ensure_pending_action(self) -> str | None:
        """An ops action awaiting approval: retry the first demo merchant's dlq payouts (low risk)."""
        r = await self.http.get("/ops/actions", headers=self.ops, params={"status": "pending_approval"})
        if r.status_code == 404:
            return None  # ops actions are not part of this API (yet)
        r.raise_for_status()
        if any(a["created_by"] == DEMO_OPS_SUB for a in r.json()["data"]):
            return None
        m = DEMO_MERCHANTS[0]
        r = await self.http.post("/ops/actions", headers=self.ops, json={
            "type": "RETRY_PAYOUTS", "params": {"filter": {"merchant_id": m.id}},
            "reason": f"the bank says the outage that parked {m.name}'s payouts is over"})
        if r.status_code != 201:
            log.info("demo ops action refused: %s %s", r.status_code, r.text[:200])
            return None
        return r.json()["id"]

    async def ensure_agents(self) -> int:
        """The demo's mobile-money agents around Dakar, Abidjan and Accra (devstack/demo_agents.py),
        loaded once; a quarter of the Senegalese ones are Baobab Telecom's. Returns how many it sent."""
        r = await self.http.get(f"/agents/{DEMO_AGENT_PREFIX}000000", headers=self.ops)
        if r.status_code != 404:
            return 0
        agents = demo_agents(merchant_for={"SN": "mer_demo_baobab"})
        for i in range(0, len(agents), 1000):
            r = await self.http.put("/agents", headers=self.ops, json={"agents": agents[i:i + 1000]})
            r.raise_for_status()
        return len(agents)

    async def ensure_agent_sales(self, now: datetime | None = None) -> int:
        """Cash-in / cash-out transactions at some demo agents over the last 30 days
        (devstack/demo_agents.py), so their 30-day sales are not empty. Idempotent: today's ids
        already recorded are skipped. Returns how many were new."""
        sales = demo_agent_sales(demo_agents(merchant_for={"SN": "mer_demo_baobab"}),
                                 now or datetime.now(timezone.utc))
        recorded = 0
        for i in range(0, len(sales), 1000):
            r = await self.http.post("/agents/transactions", headers=self.ops, json={"transactions": sales[i:i + 1000]})
            r.raise_for_status()
            recorded += r.json()["recorded"]
        return recorded

    async def trigger_syncs(self) -> None:
        for source in ("vima", "payshack"):
            r = await self.http.post("/sync/trigger", headers=self.ops, json={"source": source})
            if r.status_code >= 400:
                log.info("demo sync trigger for %s: %s %s", source, r.status_code, r.text[:200])


async def seed(client: DemoClient, *, payouts_per_merchant: int = 3, failing_per_merchant: int = 1,
               rng: random.Random | None = None, syncs: bool = True) -> list[str]:
    """Merchants (created and funded once), a first batch of payouts, a pending ops action, syncs.
    Returns the ids of the payouts it created."""
    rng = rng or random.Random()
    created: list[str] = []
    for m in DEMO_MERCHANTS:
        await client.ensure_merchant(m)
        for i in range(payouts_per_merchant):
            p = await client.create_payout(m, rng, failing=i < failing_per_merchant)
            if p:
                created.append(p["id"])
    await client.ensure_pending_action()
    await client.ensure_agents()
    await client.ensure_agent_sales()
    if syncs:
        await client.trigger_syncs()
    return created


async def trickle(client: DemoClient, *, interval: float = 4.0, failing_share: float = 0.08,
                  rng: random.Random | None = None, stop: asyncio.Event | None = None) -> None:
    """A payout every `interval` seconds from a random demo merchant; a few of them fail into dlq."""
    rng = rng or random.Random()
    stop = stop or asyncio.Event()
    tick = 0
    while not stop.is_set():
        tick += 1
        try:
            m = rng.choice(DEMO_MERCHANTS)
            await client.ensure_merchant(m)  # `payops demo --reset` may have removed it
            await client.create_payout(m, rng, failing=rng.random() < failing_share)
            if tick % 15 == 0:
                for each in DEMO_MERCHANTS:
                    await client.top_up_when_low(each)
                await client.ensure_pending_action()
        except Exception as exc:  # noqa: BLE001 — the demo keeps going through API restarts
            log.warning("demo tick failed: %s: %s", type(exc).__name__, exc)
        try:
            await asyncio.wait_for(stop.wait(), interval * rng.uniform(0.5, 1.5))
        except asyncio.TimeoutError:
            pass


async def wait_for_api(api_url: str, timeout: float = 120.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    async with httpx.AsyncClient(timeout=3.0) as http:
        while True:
            try:
                if (await http.get(f"{api_url.rstrip('/')}/ready")).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError(f"the API at {api_url} did not become ready")
            await asyncio.sleep(0.5)


async def run_demo(api_url: str, settings: Settings, *, interval: float, once: bool) -> None:
    await wait_for_api(api_url)
    client = DemoClient(api_url, settings)
    try:
        for attempt in range(10):
            try:
                created = await seed(client)
                log.info("demo seeded: %d payouts", len(created))
                break
            except Exception as exc:  # noqa: BLE001 — e.g. Temporal still starting; try again
                log.warning("demo seed attempt %d failed: %s: %s", attempt + 1, type(exc).__name__, exc)
                await asyncio.sleep(2)
        if not once:
            await trickle(client, interval=interval)
    finally:
        await client.aclose()


def with_running_stack(settings: Settings) -> tuple[Settings, str | None]:
    """Settings completed from the `payops up` running in this data dir (stack.json), for a
    `payops demo` typed in another shell; and that stack's API URL."""
    import json

    try:
        services = json.loads((settings.data_dir / "stack.json").read_text())["services"]
    except (OSError, ValueError, KeyError):
        return settings, None
    update: dict[str, Any] = {}
    if not settings.database_url and services.get("postgres", {}).get("url"):
        update["database_url"] = services["postgres"]["url"]
    if services.get("temporal", {}).get("url") and not settings.temporal_external:
        update["temporal_address"] = services["temporal"]["url"]
    return settings.model_copy(update=update), services.get("api", {}).get("url")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m devstack.demo", description="Seed and trickle payops demo data.")
    parser.add_argument("--api-url", default=None, help="default: http://PAYOPS_API_HOST:PAYOPS_API_PORT")
    parser.add_argument("--interval", type=float, default=4.0, help="seconds between demo payouts")
    parser.add_argument("--once", action="store_true", help="seed and exit (no trickle)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    settings, stack_api = with_running_stack(get_settings())
    host = "127.0.0.1" if settings.api_host in ("0.0.0.0", "::") else settings.api_host
    api_url = args.api_url or stack_api or f"http://{host}:{settings.api_port}"
    try:
        asyncio.run(run_demo(api_url, settings, interval=args.interval, once=args.once))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
