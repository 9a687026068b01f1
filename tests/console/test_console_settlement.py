"""The Settlement and Profile pages in a real headless Chromium, against the real API over HTTP, a
real worker and the sandbox bank: a merchant admin registers a bank account in the page, ops
verify its KYC and approve the account (ops actions, two approvers each), and the Withdraw
button makes a payout that appears on the Payouts page, live in the activity feed of the
merchant's dashboard (whose settlement panel follows it) and on the API log page; a merchant
viewer sees the pages read-only."""

from __future__ import annotations

import re

import httpx
import pytest

from core.platform.auth_tokens import mint_dev_token
from tests.browser import needs_chromium
# the browser, server and sandbox fixtures of the console's main browser test, shared as they are
from tests.console.test_console_browser import (  # noqa: F401 — fixtures
    api,
    browser,
    open_page,
    served,
    settings,
    shot,
    sign_in_as,
    vima,
    wait_for,
    wait_for_api_log,
)

pytestmark = needs_chromium


@pytest.fixture
def demo_client(served, settings):  # noqa: F811 — the imported fixtures
    from devstack.demo import DemoClient

    return DemoClient(served, settings)


def money_text(minor: int) -> str:
    return f"€{minor / 100:,.2f}"


async def approved_ops_action(api: httpx.AsyncClient, settings, type_: str, params: dict) -> dict:  # noqa: F811
    def as_(role: str, sub: str) -> dict:
        return {"Authorization": f"Bearer {mint_dev_token(settings, role=role, sub=sub)}"}

    r = await api.post("/ops/actions", json={"type": type_, "params": params}, headers=as_("risk_ops", "rahul"))
    assert r.status_code == 201, r.text
    action_id = r.json()["id"]
    for who in ("ana", "ben"):
        r = await api.post(f"/ops/actions/{action_id}/approve", headers=as_("approver", who))
        assert r.status_code == 200, r.text

    async def done():
        a = (await api.get(f"/ops/actions/{action_id}", headers=as_("ops_admin", "olivia"))).json()
        return a if a["status"] in ("executed", "failed") else None

    action = await wait_for(done, f"{type_} to execute")
    assert action["status"] == "executed", action
    return action


async def test_withdraw_button_makes_a_payout_on_the_payouts_page(open_page, api, demo_client, settings):  # noqa: F811
    from devstack.demo import DEMO_MERCHANTS

    lumen = DEMO_MERCHANTS[0]
    await demo_client.ensure_merchant(lumen)
    page = await open_page()
    await sign_in_as(page, f"{lumen.name} — merchant admin")
    assert {"Settlement", "Profile"} <= set(await page.locator("#nav a").all_inner_texts())
    await page.click("#nav a[data-page=settlement]")
    await page.wait_for_selector("main[data-page=settlement][data-loaded=true] [data-currency=EUR]")
    assert await page.locator("[data-testid=withdraw]").is_disabled()  # KYC pending
    assert "pending" in (await page.inner_text("[data-testid=settlement-kyc]")).lower()

    # register an account through the page's form
    await page.click("[data-testid=register-account]")
    await page.select_option("#modal-rail", "sepa")
    await page.fill("#modal-currency", "EUR")
    await page.fill("#modal-iban", "DE89 3704 0044 0532 0130 00")
    await page.fill("#modal-bic", "COBADEFFXXX")
    await page.click("[data-modal=submit]")
    row = page.locator("[data-testid=bank-accounts] tr[data-account]")
    await row.first.wait_for()
    account_id = await row.first.get_attribute("data-account")
    assert await row.first.get_attribute("data-usable") == "false"
    assert "cool-off until" in await row.first.inner_text()
    await shot(page, "30-merchant-settlement-cool-off")

    await approved_ops_action(api, settings, "SET_KYC_STATUS",
                              {"merchant_id": lumen.id, "status": "verified", "reason": "documents checked"})
    await approved_ops_action(api, settings, "APPROVE_BANK_ACCOUNT",
                              {"merchant_id": lumen.id, "account_id": account_id, "reason": "called back"})
    balance_before = (await api.get(f"/merchants/{lumen.id}/settlement", headers=demo_client.ops)).json()

    # the merchant's dashboard, open in another window: its settlement panel and activity feed
    dash = await open_page()
    await sign_in_as(dash, f"{lumen.name} — merchant admin")
    await dash.wait_for_selector("[data-testid=portal-settlement][data-loaded=true] [data-currency=EUR]")
    await dash.wait_for_selector("[data-testid=activity-panel][data-loaded=true]")
    assert (await dash.inner_text("[data-testid=portal-settlement] [data-currency=EUR] [data-field=available]")
            == money_text(next(c for c in balance_before["currencies"] if c["currency"] == "EUR")["available_minor"]))

    await page.reload()
    await page.wait_for_selector(f"[data-testid=bank-accounts] tr[data-account='{account_id}'][data-usable=true]")
    await page.click("[data-testid=withdraw]")
    await page.select_option("#modal-account_id", account_id)
    await page.fill("#modal-amount", "12.34")
    await page.select_option("#modal-priority", "instant")
    await page.click("[data-modal=submit]")
    link = page.locator("[data-testid=withdrawal-result] a[data-payout-link]")
    await link.wait_for()
    payout_id = await link.get_attribute("data-payout-link")
    assert re.fullmatch(r"po_[0-9a-f]{32}", payout_id)
    await shot(page, "31-merchant-withdrawal")

    payout = (await api.get(f"/payouts/{payout_id}", headers=demo_client.ops)).json()
    assert (payout["merchant_id"], payout["amount_minor"], payout["currency"]) == (lumen.id, 1234, "EUR")
    assert payout["metadata"]["bank_account_id"] == account_id
    (eur_before,) = [c for c in balance_before["currencies"] if c["currency"] == "EUR"]

    async def settled():
        return (await api.get(f"/payouts/{payout_id}", headers=demo_client.ops)).json()["status"] == "settled"

    await wait_for(settled, "the withdrawal to settle", 60)
    # the page follows it live: its status in the result, and the funds it took
    await page.wait_for_selector(f"[data-withdrawal-status='{payout_id}'] [data-status=settled]")
    after = (await api.get(f"/merchants/{lumen.id}/settlement", headers=demo_client.ops)).json()
    (eur_after,) = [c for c in after["currencies"] if c["currency"] == "EUR"]
    assert eur_after["available_minor"] == eur_before["available_minor"] - 1234 - payout["fee_minor"]
    available = money_text(eur_after["available_minor"])

    async def panel_shows_it():
        return available in await page.inner_text("[data-currency=EUR] [data-field=available]")

    await wait_for(panel_shows_it, f"the panel to show {available} available")

    # the dashboard got the withdrawal live in its activity feed, and its settlement panel followed
    await dash.wait_for_selector(f"[data-testid=activity-feed] li[data-ref='{payout_id}']")

    async def dashboard_panel_shows_it():
        return available == await dash.inner_text("[data-testid=portal-settlement] [data-currency=EUR] [data-field=available]")

    await wait_for(dashboard_panel_shows_it, f"the dashboard's settlement panel to show {available} available")
    await shot(dash, "33-merchant-dashboard-after-withdrawal")
    assert dash.js_errors == []

    # the API log page shows the withdrawal request (no body, no secret: its route and status)
    await wait_for_api_log(page, "POST /api/v1/merchants/{merchant_id}/withdrawals",
                           "the withdrawal in the merchant's API log")
    await shot(page, "34-merchant-api-log-withdrawal")

    # it is on the Payouts page, and the link opens it
    await page.click("#nav a[data-page=payouts]")
    await page.wait_for_selector(f"[data-testid=payouts] tr[data-payout='{payout_id}']")
    await page.goto(page.url.split("#")[0] + f"#/payouts/{payout_id}")
    await page.wait_for_selector("[data-testid=payout-status] [data-status=settled]")
    await shot(page, "32-merchant-withdrawal-payout")

    # the profile shows the KYC history
    await page.click("#nav a[data-page=profile]")
    await page.wait_for_selector("[data-testid=profile] tr[data-kyc-change=verified]")
    assert "Lumen Coffee" in await page.inner_text("[data-field=company_name]")
    assert page.js_errors == []

    # a merchant viewer: the same pages, read-only
    viewer = await open_page()
    await sign_in_as(viewer, f"{lumen.name} — merchant viewer")
    await viewer.click("#nav a[data-page=settlement]")
    await viewer.wait_for_selector(f"main[data-page=settlement][data-loaded=true] tr[data-account='{account_id}']")
    assert await viewer.locator("[data-testid=withdraw]").count() == 0
    assert await viewer.locator("[data-testid=register-account]").count() == 0
    await viewer.click("#nav a[data-page=profile]")
    await viewer.wait_for_selector("main[data-page=profile][data-loaded=true]")
    assert await viewer.locator("[data-testid=edit-profile]").count() == 0
    assert viewer.js_errors == []
