"""The merchant portal in a real headless Chromium (the fixtures of test_console_browser.py: the
real API over HTTP, a real worker, the sandbox bank): a merchant admin's dashboard with its cards,
health and activity feed, a live payout arriving in the feed while the page is open (and another
merchant's never), no ops pages, its API log; and an ops "view as" session: the banner, the
portal's pages only, no write button, and the way back."""

from __future__ import annotations

import random
import re

from tests.console.test_console_browser import (  # noqa: F401 — fixtures
    api, browser, db, demo_client, open_page, served, settings, shot, sign_in_as, vima, wait_for, wait_for_api_log,
)
from tests.console.test_console_browser import pytestmark  # noqa: F401 — skipped without Chromium

PORTAL_NAV = ["Dashboard", "Transactions", "Payouts", "Schedules", "API logs", "Settlement", "Profile", "Webhooks"]
OPS_ONLY = ["overview", "approvals", "reconciliation", "connectors", "rails", "batches", "sla", "syncs", "alerts",
            "recommendations", "merchant"]


async def test_merchant_portal_dashboard_live_feed_and_api_log(open_page, api, demo_client):  # noqa: F811
    from devstack.demo import DEMO_MERCHANTS

    mine, other = DEMO_MERCHANTS[0], DEMO_MERCHANTS[1]
    rng = random.Random(21)
    for m in (mine, other):
        await demo_client.ensure_merchant(m)
    before = await demo_client.create_payout(mine, rng)
    theirs = await demo_client.create_payout(other, rng)

    page = await open_page()
    await sign_in_as(page, f"{mine.name} — merchant admin")
    assert await page.locator("#nav a").all_inner_texts() == PORTAL_NAV
    await page.wait_for_selector("main[data-page=dashboard]")
    assert await page.title() == "Dashboard · Merchant portal"
    assert await page.inner_text("#brand-name") == "merchant portal"
    await page.wait_for_selector("[data-testid=kpis] .kpi")
    await page.wait_for_selector("[data-testid=status-cards] .kpi, [data-testid=status-cards] p")
    await page.wait_for_selector("[data-testid=recent-transactions] table, [data-testid=recent-transactions] .empty")
    await page.wait_for_selector("[data-testid=health-panel][data-loaded=true] [data-testid=health-webhook-rate]")
    await page.wait_for_selector("[data-testid=activity-panel][data-loaded=true]")
    await page.wait_for_selector(f"[data-testid=activity-feed] li[data-ref='{before['id']}']")
    assert await page.locator(f"[data-testid=activity-feed] li[data-ref='{theirs['id']}']").count() == 0
    assert await page.inner_text("[data-testid=portal-merchant]") == mine.name

    # a payout created while the page is open arrives in the feed live; another merchant's does not
    live_other = await demo_client.create_payout(other, rng)
    live_mine = await demo_client.create_payout(mine, rng)
    await page.wait_for_selector(f"[data-testid=activity-feed] li[data-live=true][data-ref='{live_mine['id']}']")
    await shot(page, "30-merchant-portal-dashboard")
    assert await page.locator(f"[data-testid=activity-feed] li[data-ref='{live_other['id']}']").count() == 0

    # no ops page, not even by URL: the portal's dashboard is shown instead
    for name in OPS_ONLY:
        assert await page.locator(f"#nav a[data-page={name}]").count() == 0
        await page.goto(page.url.split("#")[0] + f"#/{name}")
        await page.wait_for_selector("main[data-page=dashboard]")

    # webhooks page: endpoints and deliveries
    await page.click("#nav a[data-page=webhooks]")
    await page.wait_for_selector("[data-testid=webhook-endpoints] table")
    await page.wait_for_selector("[data-testid=activity-panel][data-loaded=true]")

    # the API log page shows the merchant's own requests, this page's feed read among them
    await wait_for_api_log(page, "GET /api/v1/activity", "the merchant's activity reads in its API log")
    await shot(page, "31-merchant-portal-api-logs")
    assert page.js_errors == []


async def test_ops_view_as_shows_the_banner_and_no_write_button(open_page, api, demo_client, db):  # noqa: F811
    from devstack.demo import DEMO_MERCHANTS

    mine = DEMO_MERCHANTS[0]
    await demo_client.ensure_merchant(mine)
    payout = await demo_client.create_payout(mine, random.Random(4))

    page = await open_page()
    await sign_in_as(page, "Olivia")
    await page.goto(page.url.split("#")[0] + f"#/merchant/{mine.id}")
    await page.wait_for_selector("[data-testid=health-panel][data-loaded=true]")
    await page.wait_for_selector(f"[data-testid=activity-feed] li[data-ref='{payout['id']}']")
    await shot(page, "32-ops-merchant-page")
    await page.click("[data-testid=view-as]")
    await page.fill("#modal-reason", "support ticket 8812")
    await page.click("[data-modal=submit]")

    banner = page.locator("[data-testid=view-as-banner]")
    await banner.wait_for(state="visible")
    async def named():  # the merchant's name replaces its id once read
        return await page.inner_text("[data-testid=view-as-merchant]") == mine.name

    await wait_for(named, "the banner to name the merchant", 10)
    text = await banner.inner_text()
    assert re.search(rf"Viewing as {re.escape(mine.name)} — read-only", text), text
    assert "demo-olivia" in text
    assert await page.locator("#nav a").all_inner_texts() == PORTAL_NAV
    await page.wait_for_selector("[data-testid=activity-panel][data-loaded=true]")
    await page.wait_for_selector("[data-testid=kpis] .kpi")
    await shot(page, "33-ops-view-as-dashboard")

    # no write button anywhere the portal goes
    write = re.compile(r"retry|cancel|pause|resume|withdraw|create|new|approve|reject|repair|apply|dismiss|resolve|"
                       r"acknowledge|rotate|delete|register", re.I)
    for where, key in (("dashboard", "[data-testid=activity-panel][data-loaded=true]"),
                       (f"payouts/{payout['id']}", "[data-testid=payout-status]"),
                       ("schedules", "main[data-page=schedules]"),
                       ("webhooks", "[data-testid=webhook-endpoints]"),
                       ("settlement", "[data-testid=settlement-panel]")):
        await page.goto(page.url.split("#")[0] + f"#/{where}")
        await page.wait_for_selector(key)
        await page.wait_for_timeout(300)
        labels = await page.locator("main button").all_inner_texts()
        assert not [b for b in labels if write.search(b)], (where, labels)
    # the session is audited: its row, with the reason
    row = await db.fetchrow("SELECT actor, reason FROM view_as_sessions WHERE merchant_id = $1 ORDER BY created_at DESC",
                            mine.id)
    assert dict(row) == {"actor": "demo-olivia", "reason": "support ticket 8812"}

    # exit: the session ends on the server too, and it is back to the ops console as Olivia
    session_token = await page.evaluate("() => sessionStorage.getItem('payops.token')")
    assert session_token
    await page.click("[data-testid=view-as-exit]")
    await banner.wait_for(state="hidden")
    await page.wait_for_selector("main[data-page=merchant]")
    assert "Approvals" in await page.locator("#nav a").all_inner_texts()
    ended = await db.fetchrow("SELECT ended_at, ended_by FROM view_as_sessions WHERE merchant_id = $1 "
                              "ORDER BY created_at DESC", mine.id)
    assert ended["ended_at"] is not None and ended["ended_by"] == "demo-olivia"
    r = await api.get("/me", headers={"Authorization": f"Bearer {session_token}"})  # a copy left behind
    assert r.status_code == 401 and r.json()["type"] == "view_as_ended"
    assert page.js_errors == []
