"""The merchant portal has no ops pages, and the APIs those pages read answer a merchant user
403 (or 404): hiding a page is not the protection, the API is."""

from __future__ import annotations

import pytest

# every GET the console's ops pages make (api/console/js/pages/*.js), with a placeholder id
OPS_PAGE_READS = [
    "/ops/actions", "/ops/action-types", "/ops/actions/x", "/ops/actions/x/plan",  # approvals
    "/reconciliation/summary?date=2030-01-01", "/reconciliation/discrepancies?date=2030-01-01",
    "/reconciliation/schedule", "/reconciliation/runs/x",  # reconciliation
    "/connectors/health",  # connectors
    "/payouts/batches", "/payouts/batches/x",  # batches
    "/sla/breaches", "/sla/rules", "/sla/rules/changes",  # sla
    "/sync/status", "/sync/quarantine", "/sync/runs/x",  # syncs
    "/recommendations/x",  # recommendations (detail of another merchant's or none: 404)
    "/provider-accounts", "/ops/view-as",  # merchants (ops)
]

# Reads of ops pages that are merchant-scoped by design and stay open to merchant users: the rails'
# cutoffs and fees (what the settlement panel's next settlement date comes from), the merchant's
# own alerts (float_low on its balance) and its own recommendations. Their scoping is tested in
# tests/rails and tests/recommendations; the portal shows none of these pages.
SCOPED_BY_DESIGN = ["/rails", "/rails/calendars/TARGET", "/alerts", "/alerts/rules", "/recommendations"]


@pytest.mark.parametrize("role", ["merchant_admin", "merchant_viewer"])
async def test_ops_page_apis_refuse_merchant_users(client, token_for, role):
    headers = token_for(role, merchant_id="mer_portal_a")
    answered = {}
    for path in OPS_PAGE_READS:
        r = await client.get(f"/api/v1{path}", headers=headers)
        answered[path] = r.status_code
    assert {p: s for p, s in answered.items() if s not in (403, 404)} == {}
    for path in SCOPED_BY_DESIGN:
        assert (await client.get(f"/api/v1{path}", headers=headers)).status_code == 200, path
