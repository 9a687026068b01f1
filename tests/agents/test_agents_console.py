"""The console's agent map in a real headless Chromium against the API over HTTP: the base map
(vendored Natural Earth) and the agent clusters draw with no request leaving the machine, a
cluster zooms in, the nearby search lists agents nearest first and opens one; an agent signed in
sees only itself."""

from __future__ import annotations

import random

import pytest

from core.agents import service
from core.platform.auth_tokens import mint_dev_token
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
async def open_page(served):
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        browser = await launch(pw)

        async def make():
            ctx = await browser.new_context(locale="en-US", viewport={"width": 1360, "height": 900})
            p = await ctx.new_page()
            errors: list[str] = []
            outside: list[str] = []
            p.on("pageerror", lambda exc: errors.append(str(exc)))

            async def only_local(route):
                if route.request.url.startswith(served):
                    await route.continue_()
                else:  # offline: nothing may leave for a tile server or a CDN
                    outside.append(route.request.url)
                    await route.abort()

            await p.route("**/*", only_local)
            p.js_errors, p.outside = errors, outside  # type: ignore[attr-defined]
            p.set_default_timeout(20_000)
            await p.goto(f"{served}/")
            await p.wait_for_selector("body[data-ready=true]")
            return p

        yield make
        await browser.close()


@pytest.fixture
async def dakar_agents(sessionmaker):
    rng = random.Random(3)
    agents = [{"id": f"agt_c{i:04d}", "name": f"Kiosque {i}", "lat": round(14.7 + rng.uniform(-0.2, 0.2), 6),
               "lon": round(-17.45 + rng.uniform(-0.2, 0.2), 6), "operator": "wave", "country": "SN", "city": "Dakar",
               "floats": [{"currency": "XOF", "amount_minor": 100_000 + i, "low_threshold_minor": 50_000}]}
              for i in range(150)]
    async with sessionmaker() as s, s.begin():
        await service.upsert_agents(s, agents)
    return agents


async def test_the_map_draws_the_base_map_and_clusters_offline_and_the_nearby_search_works(open_page, dakar_agents):
    page = await open_page()
    await page.wait_for_selector("[data-testid=demo-users] button")
    await page.locator("[data-testid=demo-users] button", has_text="Olivia").first.click()
    await page.click("#nav a[data-page=agents]")
    canvas = page.locator("[data-testid=agent-map]")
    await page.wait_for_selector("[data-testid=agent-map][data-loaded=true]")
    assert int(await canvas.get_attribute("data-countries")) > 200  # Natural Earth 1:50m: 241 countries
    assert int(await canvas.get_attribute("data-total")) == len(dakar_agents)  # West Africa in view
    assert int(await canvas.get_attribute("data-clusters")) >= 1
    SHOTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(SHOTS / "agents-map.png"), full_page=True)

    # a click on a cluster zooms into it and says what it holds
    zoom = int(await canvas.get_attribute("data-zoom"))
    x, y, single = (await canvas.get_attribute("data-first-cluster")).split(",")
    assert single == ""  # 150 agents in a few km: a cluster at zoom 5
    await canvas.click(position={"x": int(x), "y": int(y)})
    await page.wait_for_function(f"document.querySelector('[data-testid=agent-map]').dataset.zoom > {zoom}")
    assert "150 agents" in await page.inner_text("[data-testid=cluster-info]")
    assert "XOF" in await page.inner_text("[data-testid=cluster-info]") or "CFA" in await page.inner_text(
        "[data-testid=cluster-info]")

    # the nearby search around one agent: it comes first, at 0 km, and opens its details
    target = dakar_agents[17]
    await page.fill("#ag-lat", str(target["lat"]))
    await page.fill("#ag-lon", str(target["lon"]))
    await page.fill("#ag-radius", "3")
    await page.click("[data-testid=nearby-form] button[type=submit]")
    await page.wait_for_selector("[data-testid=nearby-results] [data-nearby]")
    ids = await page.locator("[data-testid=nearby-results] [data-nearby]").evaluate_all(
        "els => els.map(e => e.dataset.nearby)")
    assert ids[0] == target["id"]
    assert "0.00 km" in await page.locator("[data-testid=nearby-results] tbody tr").first.inner_text()
    await page.click(f"[data-nearby='{target['id']}']")
    detail = page.locator(f"[data-testid=agent-detail][data-agent='{target['id']}']")
    await detail.wait_for()
    assert "threshold" in await detail.inner_text()
    await page.screenshot(path=str(SHOTS / "agents-nearby.png"), full_page=True)

    # out-of-range input is the API's 422, shown in words
    await page.click("#drawer-close")
    await page.evaluate("document.getElementById('ag-radius').removeAttribute('max')")
    await page.fill("#ag-radius", "900")
    await page.click("[data-testid=nearby-form] button[type=submit]")
    await page.wait_for_selector("[data-testid=nearby-results] .error-box")
    assert page.outside == []  # type: ignore[attr-defined]
    assert page.js_errors == []  # type: ignore[attr-defined]


async def test_an_agent_signed_in_sees_only_itself_on_the_map(open_page, dakar_agents, settings):
    me = dakar_agents[3]
    page = await open_page()
    await page.fill("#token", mint_dev_token(settings, role="agent", agent_id=me["id"], sub="agent-user"))
    await page.click("form[aria-labelledby=signin-paste] button[type=submit]")
    await page.wait_for_selector("[data-testid=agent-map][data-loaded=true]")
    nav = await page.locator("#nav a").evaluate_all("els => els.map(e => e.dataset.page)")
    assert nav == ["agents"]
    canvas = page.locator("[data-testid=agent-map]")
    assert await canvas.get_attribute("data-total") == "1"
    x, y, single = (await canvas.get_attribute("data-first-cluster")).split(",")
    assert single == me["id"]
    await canvas.click(position={"x": int(x), "y": int(y)})
    await page.locator(f"[data-testid=agent-detail][data-agent='{me['id']}']").wait_for()
    assert page.outside == [] and page.js_errors == []  # type: ignore[attr-defined]


async def test_the_map_page_fits_a_phone_screen(open_page, dakar_agents):
    page = await open_page()
    await page.set_viewport_size({"width": 390, "height": 844})
    await page.wait_for_selector("[data-testid=demo-users] button")
    await page.locator("[data-testid=demo-users] button", has_text="Olivia").first.click()
    await page.goto(page.url.split("#")[0] + "#/agents")
    await page.wait_for_selector("[data-testid=agent-map][data-loaded=true]")
    overflow = await page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
    assert overflow <= 0, f"{overflow}px wider than the phone's screen"
    SHOTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(SHOTS / "agents-map-phone.png"), full_page=True)
    assert page.outside == [] and page.js_errors == []  # type: ignore[attr-defined]
