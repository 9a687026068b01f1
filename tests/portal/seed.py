"""Seed data for the merchant portal tests: for each merchant, rows in every table the activity
feed reads, written as the product writes them (inserts; payout_events and the ops audit are
append-only), at known times."""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta, timezone

from sqlalchemy import insert

from core.platform.tables import (
    events,
    ops_action_audit,
    ops_actions,
    payout_events,
    payouts,
    transactions,
    webhook_attempts,
    webhook_endpoints,
)

BASE = datetime(2030, 3, 1, 12, 0, tzinfo=timezone.utc)


async def seed_activity(sm, merchant: str, *, n: int = 5, salt: int = 0) -> dict[str, set[str]]:
    """n of each kind for `merchant`; returns the feed ids expected per kind. Times interleave
    across kinds and repeat (ties), so paging must break ties by id."""
    expected: dict[str, set[str]] = {k: set() for k in ("payment", "payout", "settlement", "webhook", "ops")}
    tag = uuid.uuid4().hex[:8]
    async with sm() as s, s.begin():
        for i in range(n):
            at = BASE - timedelta(minutes=i // 2, seconds=salt)  # two rows per minute: ties in time
            tx_id = (await s.execute(insert(transactions).values(
                source="vima", source_id=f"{tag}-{i}", merchant_id=merchant, project="p", amount_minor=100 + i,
                currency="INR", status="success", occurred_at=at, raw={}, data_hash=f"h{tag}{i}",
            ).returning(transactions.c.id))).scalar_one()
            expected["payment"].add(f"tx:{tx_id:020d}")
            payout_id = f"po_{uuid.uuid4().hex}"
            await s.execute(insert(payouts).values(
                id=payout_id, merchant_id=merchant, idempotency_key=uuid.uuid4().hex, amount_minor=500, currency="EUR",
                method="sepa", priority="standard", status="settled", beneficiary_encrypted=b"x",
                beneficiary_masked={}, created_at=at))
            for seq, (frm, to) in enumerate([(None, "held"), ("held", "settled")]):
                pe = (await s.execute(insert(payout_events).values(
                    payout_id=payout_id, sequence=seq + 1, actor="test", from_status=frm, to_status=to, created_at=at,
                ).returning(payout_events.c.id))).scalar_one()
                expected["settlement" if to == "settled" else "payout"].add(f"pe:{pe:020d}")
            endpoint, event = f"we_{uuid.uuid4().hex[:12]}", f"evt_{uuid.uuid4().hex[:12]}"
            await s.execute(insert(webhook_endpoints).values(
                id=endpoint, merchant_id=merchant, url="https://example.test/h", event_types=["*"],
                secrets_encrypted=b"x", enabled=i % 2 == 1, disabled_reason=None if i % 2 else "failing for 3 days",
                updated_at=at))
            if i % 2 == 0:
                expected["webhook"].add(f"we:{endpoint}")
            await s.execute(insert(events).values(id=event, merchant_id=merchant, type="payout.settled", data={}))
            wa = (await s.execute(insert(webhook_attempts).values(
                event_id=event, endpoint_id=endpoint, merchant_id=merchant, workflow_id=f"wf-{endpoint}", attempt=1,
                url="https://example.test/h", outcome="succeeded" if i % 3 else "failed", status_code=200,
                latency_ms=12, created_at=at).returning(webhook_attempts.c.id))).scalar_one()
            expected["webhook"].add(f"wa:{wa:020d}")
            action = f"oa_{uuid.uuid4().hex[:12]}"
            await s.execute(insert(ops_actions).values(
                id=action, action_type="freeze_merchant", target={"kind": "merchant", "id": merchant},
                params={"merchant_id": merchant}, risk_level="medium", required_approvals=1, status="executed",
                reason="test", created_by="ops", created_at=at))
            oa = (await s.execute(insert(ops_action_audit).values(
                action_id=action, event_key=f"created-{i}", event="created", actor="ops", to_status="pending_approval",
                data=json.loads("{}"), created_at=at).returning(ops_action_audit.c.id))).scalar_one()
            expected["ops"].add(f"oa:{oa:020d}")
    return expected
