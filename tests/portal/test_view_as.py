"""Ops "view as": who may open one, what the session's token is (a read-only merchant_viewer of
one merchant), that every write endpoint of the OpenAPI answers 403 under it, and the audit (the
session's row, the activity feed, the API request log under the real actor)."""

from __future__ import annotations

import asyncio
import re
import time

import jwt
import pytest
from sqlalchemy import select

from core.platform.tables import api_request_log, view_as_sessions
from tests.factories import create_merchant
from tests.portal.seed import seed_activity

READ = {"get", "head", "options"}


async def start(client, headers, merchant_id, reason="customer ticket 4711"):
    return await client.post("/api/v1/ops/view-as", headers=headers, json={"merchant_id": merchant_id, "reason": reason})


@pytest.fixture
async def merchants(sessionmaker):
    a, b = await create_merchant(sessionmaker), await create_merchant(sessionmaker)
    await seed_activity(sessionmaker, a, n=3)
    await seed_activity(sessionmaker, b, n=3)
    return a, b


@pytest.mark.parametrize("role", ["ops_admin", "finance_ops", "treasury_ops", "risk_ops", "auditor"])
async def test_platform_roles_with_view_as_get_a_scoped_read_only_session(client, token_for, merchants, role,
                                                                          sessionmaker):
    a, b = merchants
    r = await start(client, token_for(role, sub=f"olivia-{role}"), a)
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["merchant_id"] == a and body["actor"] == f"olivia-{role}" and body["actor_roles"] == [role]
    view = {"Authorization": f"Bearer {body['token']}"}
    me = (await client.get("/api/v1/me", headers=view)).json()
    assert me["roles"] == ["merchant_viewer"] and me["merchant_id"] == a and me["is_merchant_user"]
    assert me["view_as_by"] == f"olivia-{role}"
    assert not {"payouts:write", "merchants:manage", "payouts:operate"} & set(me["permissions"])
    assert me["expires_at"] - time.time() <= 900 + 5
    # scoped like the merchant's own viewer
    feed = (await client.get("/api/v1/activity", headers=view, params={"limit": 200})).json()["data"]
    assert feed and {e["merchant_id"] for e in feed} == {a}
    assert any(e["kind"] == "ops" and e["event"] == "view_as.started" and e["ref"] == body["id"]
               and e["detail"]["actor"] == f"olivia-{role}" and e["detail"]["reason"] == "customer ticket 4711"
               for e in feed)
    assert (await client.get("/api/v1/activity", headers=view, params={"merchant_id": b})).status_code == 403
    assert (await client.get("/api/v1/payouts", headers=view, params={"merchant_id": b})).status_code == 403
    async with sessionmaker() as s:
        row = (await s.execute(select(view_as_sessions).where(view_as_sessions.c.id == body["id"]))).mappings().one()
    assert row["actor"] == f"olivia-{role}" and row["merchant_id"] == a and row["reason"] == "customer ticket 4711"


@pytest.mark.parametrize("role,merchant", [("approver", None), ("merchant_admin", "m"), ("merchant_viewer", "m")])
async def test_other_roles_cannot_view_as(client, token_for, merchants, role, merchant):
    a, _ = merchants
    r = await start(client, token_for(role, merchant_id=a if merchant else None), a)
    assert r.status_code == 403 and r.headers["content-type"] == "application/problem+json"


async def test_bad_requests(client, token_for, merchants):
    ops = token_for("ops_admin")
    assert (await start(client, ops, "mer_nope")).status_code == 404
    assert (await start(client, ops, merchants[0], reason="  ")).status_code == 422
    r = await client.post("/api/v1/ops/view-as", headers=ops, json={"merchant_id": merchants[0]})
    assert r.status_code == 422


def _concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "x", path)


async def test_every_write_endpoint_answers_403_under_a_view_as_token(client, token_for, merchants, app):
    a, _ = merchants
    token = (await start(client, token_for("ops_admin"), a)).json()["token"]
    view = {"Authorization": f"Bearer {token}", "Idempotency-Key": "k-1"}
    spec = (await client.get("/openapi.json")).json()
    writes = [(m, p) for p, ops in spec["paths"].items() for m in ops if m not in READ and m != "parameters"]
    assert len(writes) > 40
    not_refused = []
    for method, path in writes:
        if path == "/api/v1/graphql":
            continue  # read-only (no mutations): a query is a POST
        r = await client.request(method.upper(), _concrete(path), headers=view, json={})
        if path.startswith("/api/v1/webhooks/banks/"):
            # the banks' endpoint takes no bearer token at all (their HMAC signature): nothing granted
            assert r.status_code in (401, 403, 404), (path, r.status_code)
            continue
        if r.status_code != 403 or r.json().get("type") != "view_as_read_only":
            not_refused.append((method, path, r.status_code))
    assert not_refused == []
    # GraphQL stays readable, and answers the session's merchant only
    r = await client.post("/api/v1/graphql", headers=view, json={"query": "{ __typename }"})
    assert r.status_code == 200


async def test_requests_under_view_as_are_logged_with_the_real_actor(client, token_for, merchants, app, sessionmaker):
    a, _ = merchants
    token = (await start(client, token_for("risk_ops", sub="rahul"), a)).json()["token"]
    view = {"Authorization": f"Bearer {token}", "X-Request-ID": "view-as-probe-1"}
    assert (await client.get("/api/v1/activity", headers=view)).status_code == 200
    assert (await client.post("/api/v1/payouts", headers={**view, "X-Request-ID": "view-as-probe-2"},
                              json={})).status_code == 403
    await app.state.api_log.flush()
    async with sessionmaker() as s:
        rows = (await s.execute(select(api_request_log).where(
            api_request_log.c.request_id.in_(["view-as-probe-1", "view-as-probe-2"])).order_by(api_request_log.c.id)
        )).mappings().all()
    assert [(r["principal"], r["merchant_id"], r["method"], r["status"]) for r in rows] == [
        ("rahul", a, "GET", 200), ("rahul", a, "POST", 403)]


async def test_a_forged_or_nested_view_as_token_is_refused(client, token_for, merchants, settings):
    a, b = merchants
    token = (await start(client, token_for("ops_admin"), a)).json()["token"]
    # a view-as session cannot open another one
    r = await start(client, {"Authorization": f"Bearer {token}"}, b)
    assert r.status_code == 403
    # claims edited: the signature no longer matches
    claims = jwt.decode(token, options={"verify_signature": False})
    forged = jwt.encode({**claims, "roles": ["merchant_admin"]}, "not-the-secret", algorithm="HS256",
                        headers={"kid": "payops-view-as"})
    assert (await client.get("/api/v1/me", headers={"Authorization": f"Bearer {forged}"})).status_code == 401
    # a view-as token with write roles, even correctly signed, is not accepted
    widened = jwt.encode({**claims, "roles": ["merchant_admin"]}, settings.jwt_secret, algorithm="HS256",
                         headers={"kid": "payops-view-as"})
    assert (await client.get("/api/v1/me", headers={"Authorization": f"Bearer {widened}"})).status_code == 401
    # an ordinary token claiming view_as_by is refused (only payops's own view-as tokens carry it)
    ordinary = jwt.encode({**claims, "roles": ["ops_admin"]}, settings.jwt_secret, algorithm="HS256")
    assert (await client.get("/api/v1/me", headers={"Authorization": f"Bearer {ordinary}"})).status_code == 401


def end(client, headers, session_id):
    return client.post(f"/api/v1/ops/view-as/{session_id}/end", headers=headers)


async def test_the_sessions_own_token_ends_it_and_is_refused_from_then(client, token_for, merchants, sessionmaker):
    a, _ = merchants
    fiona = token_for("finance_ops", sub="fiona")
    body = (await start(client, fiona, a)).json()
    view = {"Authorization": f"Bearer {body['token']}"}
    me = (await client.get("/api/v1/me", headers=view)).json()
    assert me["view_as_session"] == body["id"]
    r = await end(client, view, body["id"])
    assert r.status_code == 200, r.text
    ended = r.json()
    assert ended["id"] == body["id"] and ended["ended_by"] == "fiona" and ended["ended_at"] is not None
    # refused from then, long before it expires: reads, GraphQL, live updates, another end
    for method, path, payload in (("GET", "/api/v1/me", None), ("GET", "/api/v1/activity", None),
                                  ("POST", "/api/v1/graphql", {"query": "{ __typename }"}),
                                  ("POST", f"/api/v1/ops/view-as/{body['id']}/end", None)):
        r = await client.request(method, path, headers=view, json=payload)
        assert r.status_code == 401 and r.json()["type"] == "view_as_ended", (path, r.status_code, r.text)
    r = await asyncio.wait_for(client.get("/api/v1/sse/updates", headers=view), 10)
    assert r.status_code == 401 and r.json()["type"] == "view_as_ended"
    # ending it again as its opener answers it as it is: the first end stands
    again = await end(client, fiona, body["id"])
    assert again.status_code == 200 and again.json() == ended
    # audited: listed with its end, and in the merchant's activity feed
    listed = (await client.get("/api/v1/ops/view-as", headers=fiona, params={"merchant_id": a})).json()["data"]
    assert [(s["id"], s["ended_by"], s["ended_at"]) for s in listed] == [(body["id"], "fiona", ended["ended_at"])]
    feed = (await client.get("/api/v1/activity", headers=token_for("ops_admin"),
                             params={"merchant_id": a, "kinds": "ops"})).json()["data"]
    assert [(e["event"], e["ref"], e["detail"].get("ended_by")) for e in feed if e["event"].startswith("view_as")] == [
        ("view_as.ended", body["id"], "fiona"), ("view_as.started", body["id"], None)]


async def test_who_may_end_a_session(client, token_for, merchants):
    a, b = merchants
    olivia = token_for("ops_admin", sub="olivia")
    rahul = token_for("risk_ops", sub="rahul")
    mine = (await start(client, rahul, a)).json()
    other = (await start(client, token_for("auditor", sub="ann"), b)).json()
    mine_view = {"Authorization": f"Bearer {mine['token']}"}
    other_view = {"Authorization": f"Bearer {other['token']}"}
    # another session's token, another (non-admin) ops user, the merchant's own users: 403
    for headers in (other_view, token_for("treasury_ops", sub="tess"),
                    token_for("merchant_admin", merchant_id=a), token_for("merchant_viewer", merchant_id=a)):
        r = await end(client, headers, mine["id"])
        assert r.status_code == 403 and r.headers["content-type"] == "application/problem+json", r.text
    assert (await end(client, olivia, "vas_nope")).status_code == 404
    r = await client.post(f"/api/v1/ops/view-as/{mine['id']}/end")
    assert r.status_code == 401
    assert (await client.get("/api/v1/me", headers=mine_view)).status_code == 200  # still open
    # an ops_admin ends anyone's session; the other session is untouched
    r = await end(client, olivia, mine["id"])
    assert r.status_code == 200 and r.json()["ended_by"] == "olivia"
    assert (await client.get("/api/v1/me", headers=mine_view)).status_code == 401
    assert (await client.get("/api/v1/me", headers=other_view)).status_code == 200
    # and its opener ends their own
    r = await end(client, token_for("auditor", sub="ann"), other["id"])
    assert r.status_code == 200 and r.json()["ended_by"] == "ann"
    assert (await client.get("/api/v1/me", headers=other_view)).status_code == 401
