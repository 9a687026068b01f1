"""The ops console in a real headless Chromium, against the real API served over HTTP (uvicorn on
a free loopback port), a real worker and the sandbox bank.

Every page the tests visit is saved as a screenshot under tests/artifacts/screenshots/.
"""

from __future__ import annotations

import asyncio
import os
import re
import time
import uuid
from pathlib import Path

import asyncpg
import httpx
import pytest

from tests.reconciliation_truth import DAY, build_day, insert_rows, install_pair_rules

CHROMIUM = os.environ.get("PAYOPS_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
SHOTS = Path(__file__).parent / "artifacts" / "screenshots"

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"no Chromium at {CHROMIUM} (set PAYOPS_CHROMIUM)")

TIMEOUT_MS = 20_000


@pytest.fixture
async def vima():
    from sandbox.vima import VimaConfig, running_vima

    async with running_vima(VimaConfig(seed=11)) as running:
        running.state.generate(120, days=1)
        yield running


@pytest.fixture
def settings(settings, vima):
    # fast retries: a payout the bank refuses with 503 reaches dlq in about a second
    return settings.model_copy(update={
        "vima_base_url": vima.url, "vima_sync_interval_seconds": 3600,
        "payout_retry_initial_seconds": 0.1, "payout_retry_max_interval_seconds": 0.2,
        "payout_retry_max_attempts": 2, "payout_settlement_poll_seconds": 0.5,
        "dashboard_cache_ttl_seconds": 1,
    })


@pytest.fixture
async def served(settings, temporal_client, worker):
    """The API over real HTTP, with its lifespan, on a free loopback port."""
    from api.app import create_app
    from sandbox.serving import serve_in_background

    app = create_app(settings, temporal_client=temporal_client)
    async with serve_in_background(app, graceful_shutdown_seconds=1.0) as running:
        yield running.url


@pytest.fixture(scope="module")
async def browser():
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        b = await pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield b
        await b.close()


@pytest.fixture
async def open_page(browser, served):
    """open_page() -> a new browser context (its own sign-in) on the console."""
    contexts = []

    async def make():
        ctx = await browser.new_context(locale="en-US", timezone_id="Europe/Paris", viewport={"width": 1360, "height": 900},
                                        accept_downloads=True)
        contexts.append(ctx)
        page = await ctx.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.js_errors = errors  # type: ignore[attr-defined]
        page.set_default_timeout(TIMEOUT_MS)
        await page.goto(f"{served}/")
        await page.wait_for_selector("body[data-ready=true]")
        return page

    yield make
    for ctx in contexts:
        await ctx.close()


@pytest.fixture
async def api(served):
    async with httpx.AsyncClient(base_url=f"{served}/api/v1", timeout=15.0) as client:
        yield client


@pytest.fixture
async def db(database_url):
    conn = await asyncpg.connect(database_url.replace("postgresql+asyncpg://", "postgresql://"))
    yield conn
    await conn.close()


async def shot(page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    await page.wait_for_timeout(300)  # charts draw on the next frames
    await page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


async def sign_in_as(page, label_start: str) -> None:
    await page.wait_for_selector("[data-testid=demo-users] button")
    await page.locator("[data-testid=demo-users] button", has_text=label_start).first.click()
    await page.wait_for_selector("#nav a")


async def wait_for(predicate, what: str, deadline_s: float = 30.0, every: float = 0.2):
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        value = await predicate()
        if value:
            return value
        await asyncio.sleep(every)
    raise AssertionError(f"timed out waiting for {what}")


def euros(minor: int) -> str:
    return f"€{minor / 100:,.2f}" if minor >= 0 else f"-€{-minor / 100:,.2f}"


@pytest.fixture
def demo_client(served, settings):
    from core.demo import DemoClient

    return DemoClient(served, settings)


async def test_ops_overview_live_payout_and_dlq_retry(open_page, api, demo_client, settings, bank, db):
    """Sign in as ops: KPIs match the API, a new payout appears in the live feed, a dlq payout is
    retried from its page and settles; transactions, payouts, syncs and alerts pages render."""
    import random

    from core.demo import DEMO_MERCHANTS, seed

    created = await seed(demo_client, payouts_per_merchant=2, failing_per_merchant=0, rng=random.Random(5), syncs=False)
    lumen = DEMO_MERCHANTS[0]
    ops = demo_client.ops

    async def all_settled():
        statuses = [(await api.get(f"/payouts/{pid}", headers=ops)).json()["status"] for pid in created]
        return all(s in ("settled", "failed", "rejected") for s in statuses)

    await wait_for(all_settled, "the seeded payouts to settle", 40)
    # a transaction for the unified view (what a provider sync writes)
    await db.execute("SELECT ensure_transaction_partitions(date_trunc('month', now())::date - 1, 2)")
    await db.execute("""INSERT INTO transactions (id, source, source_id, client_operation_id, project, amount_minor, currency,
                        status, payer_email, occurred_at, raw, data_hash)
                        VALUES (nextval('transactions_id_seq'), 'vima', 'op-console-1', 'order-1', 'shop', 123456, 'EUR',
                        'success', 'asha@example.com', now() - interval '5 minutes', '{"operation_id": "op-console-1"}', 'h1')""")

    page = await open_page()
    await shot(page, "00-sign-in")
    await sign_in_as(page, "Olivia")
    await page.wait_for_selector("[data-testid=kpis]")
    assert await page.locator("#nav a").all_inner_texts() == [
        "Overview", "Transactions", "Payouts", "Approvals", "Reconciliation", "Syncs", "Alerts"]

    # KPIs match the API's overview
    await page.select_option("#currency", "EUR")
    await page.wait_for_selector("[data-testid=kpi-float_available]")
    overview = (await api.get("/dashboard/overview", params={"period": "24h"}, headers=ops)).json()
    eur = next(c for c in overview["by_currency"] if c["currency"] == "EUR")
    assert await page.inner_text("[data-testid=kpi-float_available]") == euros(eur["float_available"]["value"])
    assert await page.inner_text("[data-testid=kpi-gmv]") == euros(eur["gmv"]["value"])
    settled = eur["payouts"]["settled"]
    assert await page.inner_text("[data-testid=kpi-payouts_settled]") == (
        f"{settled['count']['value']:,} · {euros(settled['amount_minor']['value'])}")
    assert await page.inner_text("[data-testid=kpi-transactions]") == f"{overview['kpis']['transactions']['value']:,}"
    await page.wait_for_selector("body[data-live=on]")
    await shot(page, "01-overview")

    # a payout created now shows up in the live feed
    new = await demo_client.create_payout(lumen, random.Random(9))
    assert new is not None
    await page.wait_for_selector(f"[data-testid=live-feed] a[href='#/payouts/{new['id']}']")
    await shot(page, "02-overview-live")

    # transactions: list, the detail drawer with raw payload and reconciliation status, an export
    await page.click("#nav a[data-page=transactions]")
    await page.wait_for_selector("[data-testid=transactions] [data-tx]")
    await page.click("[data-testid=transactions] [data-tx]")
    await page.wait_for_selector("[data-testid=recon-status]")
    assert await page.inner_text("[data-testid=recon-status]") == "unreconciled"
    assert "op-console-1" in await page.inner_text("#drawer-body pre.json")
    await shot(page, "03-transaction-drawer")
    await page.keyboard.press("Escape")
    async with page.expect_download() as download_info:
        await page.click("text=Export CSV")
    download = await download_info.value
    assert download.suggested_filename.startswith("transactions-") and download.suggested_filename.endswith(".csv")

    # a payout parks in dlq (the bank answers 503 until its faults are cleared), ops retries it
    await bank.state.reset()
    async with httpx.AsyncClient() as raw:
        r = await raw.post(f"{bank.url}/_sandbox/faults", json={"mode": "5xx", "count": 1000})
        assert r.status_code == 200
    stuck = await demo_client.create_payout(lumen, random.Random(11))

    async def in_dlq():
        return (await api.get(f"/payouts/{stuck['id']}", headers=ops)).json()["status"] == "dlq"

    await wait_for(in_dlq, "the payout to reach dlq", 40)
    await bank.state.reset()  # the bank is back
    await page.click("#nav a[data-page=payouts]")
    await page.wait_for_selector(f"[data-payout='{stuck['id']}']")
    await shot(page, "04-payouts")
    await page.click(f"a[href='#/payouts/{stuck['id']}']")
    await page.wait_for_selector("[data-testid=payout-status] [data-status=dlq]")
    assert "/namespaces/" in (await page.get_attribute("[data-testid=temporal-link]", "href"))
    assert await page.locator("[data-testid=routing-why]").count() == 1
    await shot(page, "05-payout-dlq")
    await page.click("[data-action=retry]")
    await page.wait_for_selector("[data-testid=payout-status] [data-status=settled]", timeout=40_000)
    timeline = await page.locator("[data-testid=timeline] li").all_inner_texts()
    assert any("dlq" in t for t in timeline) and "settled" in timeline[-1]
    await shot(page, "06-payout-settled")

    # syncs and alerts render for ops
    await page.click("#nav a[data-page=syncs]")
    await page.wait_for_selector("[data-testid=sync-cards] [data-source=vima]")
    await shot(page, "07-syncs")
    await page.click("#nav a[data-page=alerts]")
    await page.wait_for_selector("[data-testid=alerts] table")
    await shot(page, "08-alerts")
    assert page.js_errors == []


async def test_live_transactions_from_a_sync_triggered_in_the_console(open_page, vima):
    """One user watches the Transactions page while another triggers a Vima sync from the Syncs
    page: the new transactions appear without a reload, and the sync card counts them."""
    watcher = await open_page()
    await sign_in_as(watcher, "Aude")  # an auditor reads transactions, cannot trigger syncs
    await watcher.click("#nav a[data-page=transactions]")
    await watcher.wait_for_selector("[data-testid=transactions][data-count='0']")

    operator = await open_page()
    await sign_in_as(operator, "Olivia")
    await operator.click("#nav a[data-page=syncs]")
    await operator.wait_for_selector("[data-trigger=vima]")
    await operator.click("[data-trigger=vima]")

    await watcher.wait_for_selector("[data-testid=transactions] [data-tx]", timeout=40_000)
    assert int(await watcher.get_attribute("[data-testid=transactions]", "data-count")) > 0
    await shot(watcher, "16-transactions-live")
    await operator.wait_for_selector("[data-records=vima]:not(:text-is('0'))", timeout=30_000)
    await shot(operator, "17-syncs-after-trigger")
    # the auditor has no sync trigger
    await watcher.click("#nav a[data-page=syncs]")
    await watcher.wait_for_selector("[data-testid=sync-cards] [data-source=vima]")
    assert await watcher.locator("[data-trigger]").count() == 0


async def test_two_approvers_approve_an_action(open_page, api, demo_client, served):
    """An action created in the console needs two approvals; two different approvers give them."""
    r = await api.get("/ops/action-types", headers=demo_client.ops)
    if r.status_code == 404:
        pytest.skip("ops actions (issue 5) are not in this API yet")
    from core.demo import DEMO_MERCHANTS

    target = DEMO_MERCHANTS[1]
    await demo_client.ensure_merchant(target)

    page = await open_page()
    await sign_in_as(page, "Olivia")
    await page.click("#nav a[data-page=approvals]")
    await page.wait_for_selector("[data-testid=create-action]")
    await page.select_option("#a-type", "FREEZE_MERCHANT")
    await page.fill("#a-params", f'{{"merchant_id": "{target.id}"}}')
    await page.fill("#a-reason", "chargeback spike")
    await page.click("[data-testid=create-action] button[type=submit]")
    row = page.locator("[data-testid=pending-actions] tr[data-action-row]", has_text=target.id)
    await row.wait_for()
    action_id = await row.get_attribute("data-action-row")
    await shot(page, "09-approvals-created")

    for who, comment in (("Ana", "checked the chargebacks"), ("Ben", "agreed")):
        approver = await open_page()
        await sign_in_as(approver, who)
        await approver.click("#nav a[data-page=approvals]")
        await approver.fill(f"[data-comment='{action_id}']", comment)
        await approver.click(f"[data-vote=approve][data-action-id='{action_id}']")
        if who == "Ana":
            await approver.wait_for_selector(f"[data-action-status='{action_id}'] [data-status=pending_approval]")
            await shot(approver, "10-approvals-first-vote")

    async def frozen():
        return (await api.get(f"/merchants/{target.id}", headers=demo_client.ops)).json()["frozen"]

    await wait_for(frozen, "the merchant to be frozen", 30)
    detail = (await api.get(f"/ops/actions/{action_id}", headers=demo_client.ops)).json()
    assert {(a["approver"], a["comment"]) for a in detail["approvals"]} == {
        ("demo-ana", "checked the chargebacks"), ("demo-ben", "agreed")}
    await page.reload()
    await page.wait_for_selector(f"[data-action-status='{action_id}'] [data-status=executed]")
    await shot(page, "11-approvals-executed")


async def test_reconciliation_run_and_resolve(open_page, api, db, demo_client):
    """Finance runs a reconciliation from the console, sees the summary, resolves a discrepancy."""
    truth = build_day()
    await install_pair_rules(db)
    await insert_rows(db, truth.rows)

    page = await open_page()
    await sign_in_as(page, "Fatou")
    await page.click("#nav a[data-page=reconciliation]")
    await page.fill("#r-date", DAY.isoformat())
    await page.click("[data-action=run]")
    await page.wait_for_selector("[data-testid=recon-summary][data-run-status=success]", timeout=40_000)
    await page.wait_for_selector("[data-testid=discrepancies] [data-resolve]")
    summary = (await api.get("/reconciliation/summary", params={"date": DAY.isoformat()}, headers=demo_client.ops)).json()
    assert summary["open_discrepancies"] > 0
    await page.wait_for_selector(f"[data-testid=open-discrepancies]:text-is('{summary['open_discrepancies']:,}')")
    await shot(page, "12-reconciliation")

    target = await page.locator("[data-testid=discrepancies] [data-resolve]").first.get_attribute("data-resolve")
    await page.click(f"[data-resolve='{target}']")
    await page.select_option("#d-resolution", "written_off")
    await page.fill("#d-note", "below the write-off threshold")
    await shot(page, "13-reconciliation-resolve")
    await page.click("[data-testid=resolve-form] button[type=submit]")
    await page.wait_for_selector(f"[data-discrepancy='{target}']", state="detached")
    r = await api.get("/reconciliation/discrepancies", params={"date": DAY.isoformat(), "state": "resolved"},
                      headers=demo_client.ops)
    resolved = {d["id"]: d for d in r.json()["items"]}
    assert resolved[int(target)]["resolution"] == "written_off"
    assert resolved[int(target)]["resolved_by"] == "demo-fatou"
    await page.wait_for_selector(f"[data-testid=open-discrepancies]:text-is('{summary['open_discrepancies'] - 1:,}')")


async def test_a_merchant_sees_only_its_own_data(open_page, api, demo_client):
    """Signed in as one merchant: only its payouts, no platform pages, no ops buttons."""
    import random

    from core.demo import DEMO_MERCHANTS

    mine, other = DEMO_MERCHANTS[0], DEMO_MERCHANTS[1]
    rng = random.Random(3)
    for m in (mine, other):
        await demo_client.ensure_merchant(m)
    own = [await demo_client.create_payout(mine, rng) for _ in range(2)]
    theirs = [await demo_client.create_payout(other, rng) for _ in range(2)]
    own_dlq = await demo_client.create_payout(mine, rng, failing=True)

    page = await open_page()
    await sign_in_as(page, f"{mine.name} — merchant admin")
    assert await page.locator("#nav a").all_inner_texts() == ["Overview", "Transactions", "Payouts", "Alerts"]
    await page.wait_for_selector("[data-testid=kpis]")
    await shot(page, "14-merchant-overview")

    await page.click("#nav a[data-page=payouts]")
    await page.wait_for_selector("[data-testid=payouts] tr[data-payout]")
    shown = set(await page.locator("[data-testid=payouts] [data-merchant]").all_inner_texts())
    assert shown == {mine.id}
    ids = {await r.get_attribute("data-payout") for r in await page.locator("[data-testid=payouts] tr[data-payout]").all()}
    assert {p["id"] for p in own + [own_dlq]} <= ids and not ids & {p["id"] for p in theirs}
    await shot(page, "15-merchant-payouts")

    async def parked():
        return (await api.get(f"/payouts/{own_dlq['id']}", headers=demo_client.ops)).json()["status"] == "dlq"

    await wait_for(parked, "the merchant's failing payout to reach dlq", 40)
    await page.goto(page.url.split("#")[0] + f"#/payouts/{own_dlq['id']}")
    await page.wait_for_selector("[data-testid=payout-status] [data-status=dlq]")
    assert await page.locator("[data-action=retry], [data-action=cancel]").count() == 0

    # another merchant's payout: the API says not found, and the page says so
    await page.goto(page.url.split("#")[0] + f"#/payouts/{theirs[0]['id']}")
    await page.wait_for_selector(".error-box")
    assert re.search(r"not found", await page.inner_text(".error-box"), re.I)
    # platform pages are not reachable by URL either: the overview is shown instead
    await page.goto(page.url.split("#")[0] + "#/reconciliation")
    await page.wait_for_selector("main[data-page=overview]")
    await page.click("#nav a[data-page=transactions]")
    await page.wait_for_selector("[data-testid=transactions] table")
    assert await page.locator("[data-testid=transactions] [data-tx]").count() == 0
    assert page.js_errors == []


async def test_demo_users_endpoint_is_dev_only(served, settings, temporal_client):
    from api.app import create_app
    from sandbox.serving import serve_in_background

    async with httpx.AsyncClient(base_url=served) as client:
        users = (await client.get("/api/v1/dev/demo-users")).json()
        assert {"ops_admin", "approver", "finance_ops"} <= {u["role"] for u in users}
        assert (await client.get("/", headers={"Accept": "text/html"}, follow_redirects=False)).headers["location"] == "/console/"
    prod = settings.model_copy(update={"env": "prod"})
    async with serve_in_background(create_app(prod, temporal_client=temporal_client)) as running, \
            httpx.AsyncClient(base_url=running.url) as client:
        assert (await client.get("/api/v1/dev/demo-users")).status_code == 404
        assert (await client.get("/console/")).status_code == 200
    _ = uuid
