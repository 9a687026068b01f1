"""The activity feed against real PostgreSQL through the API: tenant scoping (a matrix like the
REST authorization tests), cursor pagination over ties, kinds, bad input."""

from __future__ import annotations

import pytest

from tests.factories import create_merchant
from tests.portal.seed import seed_activity


async def walk(client, headers, **params) -> list[dict]:
    out, cursor, pages = [], None, 0
    while True:
        r = await client.get("/api/v1/activity", headers=headers, params={**params, **({"cursor": cursor} if cursor else {})})
        assert r.status_code == 200, r.text
        body = r.json()
        out += body["data"]
        pages += 1
        assert pages < 200
        cursor = body["next_cursor"]
        if cursor is None:
            return out


@pytest.fixture
async def two(sessionmaker):
    a, b = await create_merchant(sessionmaker), await create_merchant(sessionmaker)
    return a, b, await seed_activity(sessionmaker, a, n=9), await seed_activity(sessionmaker, b, n=6, salt=7)


def ids(expected: dict[str, set[str]], kinds=None) -> set[str]:
    return set().union(*(v for k, v in expected.items() if kinds is None or k in kinds))


async def test_paging_returns_every_event_once_newest_first(client, token_for, two):
    a, _, exp_a, _ = two
    events = await walk(client, token_for("merchant_viewer", merchant_id=a), limit=4)
    got = [e["id"] for e in events]
    assert len(got) == len(set(got))
    assert set(got) == ids(exp_a)  # 9 payments, 9 payout, 9 settlement, 9+5 webhook, 9 ops
    keys = [(e["at"], e["id"]) for e in events]
    assert keys == sorted(keys, reverse=True)
    assert {e["merchant_id"] for e in events} == {a}
    # one page with everything equals the walk
    r = await client.get("/api/v1/activity", headers=token_for("merchant_viewer", merchant_id=a), params={"limit": 200})
    assert [e["id"] for e in r.json()["data"]] == got and r.json()["next_cursor"] is None


@pytest.mark.parametrize("role", ["merchant_admin", "merchant_viewer"])
async def test_a_merchant_user_never_sees_another_merchants_events(client, token_for, two, role):
    a, b, exp_a, exp_b = two
    for me, other, exp in ((a, b, exp_a), (b, a, exp_b)):
        headers = token_for(role, merchant_id=me)
        assert {e["id"] for e in await walk(client, headers, limit=50)} == ids(exp)
        r = await client.get("/api/v1/activity", headers=headers, params={"merchant_id": other})
        assert r.status_code == 403 and r.headers["content-type"] == "application/problem+json"


@pytest.mark.parametrize("role", ["ops_admin", "finance_ops", "treasury_ops", "risk_ops", "auditor", "approver"])
async def test_platform_users_see_any_merchant_or_all(client, token_for, two, role):
    a, b, exp_a, exp_b = two
    headers = token_for(role)
    assert {e["id"] for e in await walk(client, headers, merchant_id=b, limit=50)} == ids(exp_b)
    everyone = {e["id"] for e in await walk(client, headers, limit=200)}
    assert ids(exp_a) | ids(exp_b) <= everyone


async def test_kinds_filter_and_bad_input(client, token_for, two):
    a, _, exp_a, _ = two
    headers = token_for("merchant_viewer", merchant_id=a)
    got = await walk(client, headers, kinds="webhook,settlement", limit=5)
    assert {e["id"] for e in got} == ids(exp_a, {"webhook", "settlement"})
    assert {e["event"] for e in got if e["kind"] == "webhook"} == {"delivered", "failing", "disabled"}
    assert {e["event"] for e in got if e["kind"] == "settlement"} == {"settled"}
    for params in ({"kinds": "refunds"}, {"cursor": "not-a-cursor"}, {"limit": 0}, {"limit": 1000}):
        r = await client.get("/api/v1/activity", headers=headers, params=params)
        assert r.status_code == 422 and r.json()["detail"], params


async def test_unauthenticated_is_401(client):
    r = await client.get("/api/v1/activity")
    assert r.status_code == 401
