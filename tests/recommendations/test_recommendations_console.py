"""The console's Recommendations in a real headless Chromium against the API over HTTP: the
Overview shows the top recommendations, and Apply on the Recommendations page creates the ops
action (awaiting its approvals) and links it."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from core.platform.tables import ops_actions
from tests.recommendations.test_recommendations import add_payouts, new_merchant, recompute, recs, wire_payouts
from tests.browser import SHOTS, launch, needs_chromium


pytestmark = needs_chromium


@pytest.fixture
async def served(settings, temporal_client):
    from api.app import create_app
    from sandbox.serving import serve_in_background

    app = create_app(settings, temporal_client=temporal_client)
    async with serve_in_background(app, graceful_shutdown_seconds=1.0) as running:
        yield running.url


@pytest.fixture
async def page(served):
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        browser = await launch(pw)
        ctx = await browser.new_context(locale="en-US", viewport={"width": 1360, "height": 900})
        p = await ctx.new_page()
        errors: list[str] = []
        p.on("pageerror", lambda exc: errors.append(str(exc)))
        p.js_errors = errors  # type: ignore[attr-defined]
        p.set_default_timeout(20_000)
        await p.goto(f"{served}/")
        await p.wait_for_selector("body[data-ready=true]")
        yield p
        await browser.close()


async def test_apply_from_the_console_creates_the_ops_action(page, sessionmaker, settings):
    mid = await new_merchant(sessionmaker)
    await add_payouts(sessionmaker, wire_payouts(mid, days=[1, 2, 3], per_day=2, target_after=timedelta(days=7)))
    await recompute(sessionmaker, settings)
    [rec] = await recs(sessionmaker, merchant_id=mid, kind="cheaper_route")

    await page.wait_for_selector("[data-testid=demo-users] button")
    await page.locator("[data-testid=demo-users] button", has_text="Olivia").first.click()
    await page.wait_for_selector("[data-testid=top-recommendations] [data-rec]")
    top = await page.locator("[data-testid=top-recommendations] [data-rec]").evaluate_all(
        "els => els.map(e => e.dataset.rec)")
    assert rec["id"] in top and len(top) <= 3

    await page.click("#nav a[data-page=recommendations]")
    await page.wait_for_selector(f"[data-testid=recommendations] [data-apply='{rec['id']}']")
    SHOTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(SHOTS / "recommendations.png"), full_page=True)
    await page.click(f"[data-rec='{rec['id']}']")  # the details: arithmetic in words
    assert "per month" in await page.inner_text("[data-testid=rec-arithmetic]")
    await page.click("#drawer-close")
    await page.click(f"[data-testid=recommendations] [data-apply='{rec['id']}']")
    # applied: it leaves the pending list; under "Applied" it shows its action
    await page.wait_for_selector(f"[data-testid=recommendations] [data-apply='{rec['id']}']", state="detached")
    await page.select_option("#rec-status", "applied")
    status = page.locator(f"[data-rec-status='{rec['id']}']")
    await status.wait_for()
    assert "Applied" in await status.inner_text()

    [applied] = await recs(sessionmaker, id=rec["id"])
    assert applied["status"] == "applied" and applied["action_id"]
    async with sessionmaker() as s:
        action = (await s.execute(select(ops_actions).where(ops_actions.c.id == applied["action_id"]))).mappings().one()
    assert action["action_type"] == "ROUTE_OVERRIDE" and action["status"] == "pending_approval"
    assert action["params"]["merchant_id"] == mid and action["created_by"] == "demo-olivia"
    assert applied["action_id"] in await status.inner_text()
    assert page.js_errors == []  # type: ignore[attr-defined]
