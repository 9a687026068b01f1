"""`payops demo --reset`: remove the demo merchants' data, and nothing else, so the demo starts over.

Demo data is everything about merchants whose id starts with `mer_demo_` (devstack/demo.py): their
payouts (workflows terminated first), audit events, holds, idempotency keys, webhook events and
endpoints, ledger accounts and the journal transactions that touched them, freezes, the ops
actions whose params name them, and the demo agents (devstack/demo_agents.py) with their floats. Audit tables are append-only by trigger, so the deletes run with
`session_replication_role = replica` (dev databases only: it needs a superuser, and the command
refuses PAYOPS_ENV=prod). Ledger balances of the platform accounts those journal transactions
also touched are recomputed from their remaining entries, and the dashboard rollups of the days
involved are rebuilt.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from datetime import date

import asyncpg

from core.platform.names import ops_action_workflow_id, payout_workflow_id
from core.platform.settings import Settings
from core.dashboards.rollups import rebuild_rollups
from core.platform.db import create_engine
from core.platform.temporal import connect_temporal

DEMO_LIKE = "mer_demo_%"
DEMO_AGENTS_LIKE = "agt\\_demo\\_%"
DEMO_AGENT_SALES_LIKE = "agtx\\_demo\\_%"  # their cash-in / cash-out (source `agent`)


@dataclass
class ResetReport:
    merchants: int = 0
    payouts: int = 0
    workflows_terminated: int = 0
    journal_transactions: int = 0
    ops_actions: int = 0
    rollups_error: str | None = None  # set when the dashboard rollups could not be rebuilt


async def _terminate_all(settings: Settings, workflow_ids: list[str]) -> int:
    if not workflow_ids:
        return 0

    client = await connect_temporal(settings)
    done = 0
    sem = asyncio.Semaphore(50)

    async def terminate(wid: str) -> None:
        nonlocal done
        async with sem:
            with contextlib.suppress(Exception):  # already closed, or never started
                await client.get_workflow_handle(wid).terminate(reason="payops demo --reset")
                done += 1

    await asyncio.gather(*(terminate(w) for w in workflow_ids))
    return done


async def reset_demo_data(settings: Settings) -> ResetReport:
    if settings.env == "prod":
        raise RuntimeError("payops demo --reset is for dev stacks (PAYOPS_ENV=prod)")
    report = ResetReport()
    conn = await asyncpg.connect(settings.database_url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        payout_ids = [r["id"] for r in await conn.fetch("SELECT id FROM payouts WHERE merchant_id LIKE $1", DEMO_LIKE)]
        action_ids = [r["id"] for r in await conn.fetch(
            "SELECT id FROM ops_actions WHERE params::text LIKE '%mer\\_demo\\_%'")]
        open_actions = [r["id"] for r in await conn.fetch(
            "SELECT id FROM ops_actions WHERE id = ANY($1::text[]) AND status IN ('pending_approval', 'approved', 'executing')",
            action_ids)]
        # no workflow may write about a payout we are about to remove
        report.workflows_terminated = await _terminate_all(
            settings, [payout_workflow_id(p) for p in payout_ids] + [ops_action_workflow_id(a) for a in open_actions])
        span = await conn.fetchrow(
            "SELECT min(created_at)::date AS first, max(created_at)::date AS last FROM payouts WHERE merchant_id LIKE $1",
            DEMO_LIKE)
        async with conn.transaction():
            await conn.execute("SET LOCAL session_replication_role = replica")
            journal = await conn.fetch(
                "SELECT id FROM journal_transactions WHERE merchant_id LIKE $1 OR payout_id = ANY($2::text[])",
                DEMO_LIKE, payout_ids)
            journal_ids = [r["id"] for r in journal]
            touched = [r["account_id"] for r in await conn.fetch(
                "SELECT DISTINCT account_id FROM journal_entries WHERE transaction_id = ANY($1::bigint[])", journal_ids)]
            await conn.execute("DELETE FROM journal_entries WHERE transaction_id = ANY($1::bigint[])", journal_ids)
            await conn.execute("DELETE FROM journal_transactions WHERE id = ANY($1::bigint[])", journal_ids)
            await conn.execute("DELETE FROM ledger_accounts WHERE merchant_id LIKE $1", DEMO_LIKE)
            await conn.execute(
                "UPDATE ledger_accounts a SET balance_minor = COALESCE((SELECT sum(e.amount_minor) FROM journal_entries e "
                "WHERE e.account_id = a.id), 0) WHERE a.id = ANY($1::bigint[])", touched)
            await conn.execute("DELETE FROM payout_events WHERE payout_id = ANY($1::text[])", payout_ids)
            await conn.execute("DELETE FROM payout_batch_entries WHERE payout_id = ANY($1::text[])", payout_ids)
            await conn.execute("DELETE FROM ledger_holds WHERE merchant_id LIKE $1", DEMO_LIKE)
            await conn.execute("DELETE FROM webhook_attempts WHERE merchant_id LIKE $1", DEMO_LIKE)
            await conn.execute("DELETE FROM events WHERE merchant_id LIKE $1", DEMO_LIKE)
            await conn.execute("DELETE FROM webhook_endpoints WHERE merchant_id LIKE $1", DEMO_LIKE)
            await conn.execute("DELETE FROM idempotency_keys WHERE merchant_id LIKE $1", DEMO_LIKE)
            await conn.execute("DELETE FROM payouts WHERE merchant_id LIKE $1", DEMO_LIKE)
            await conn.execute("DELETE FROM controls WHERE target LIKE $1", DEMO_LIKE)
            await conn.execute("DELETE FROM ops_approvals WHERE action_id = ANY($1::text[])", action_ids)
            await conn.execute("DELETE FROM ops_action_audit WHERE action_id = ANY($1::text[])", action_ids)
            await conn.execute("DELETE FROM ops_actions WHERE id = ANY($1::text[])", action_ids)
            # the demo agents (devstack/demo_agents.py) and any agent of a demo merchant; FK actions
            # (agent_floats' cascade) do not run in replica mode, so their floats go first
            await conn.execute("""DELETE FROM agent_floats WHERE agent_id IN (
                SELECT id FROM agents WHERE merchant_id LIKE $1 OR id LIKE $2)""", DEMO_LIKE, DEMO_AGENTS_LIKE)
            await conn.execute("DELETE FROM agents WHERE merchant_id LIKE $1 OR id LIKE $2", DEMO_LIKE, DEMO_AGENTS_LIKE)
            await conn.execute("DELETE FROM transaction_keys WHERE source = 'agent' AND source_id LIKE $1",
                               DEMO_AGENT_SALES_LIKE)
            await conn.execute("DELETE FROM transactions WHERE source = 'agent' AND source_id LIKE $1",
                               DEMO_AGENT_SALES_LIKE)
            report.merchants = int((await conn.execute("DELETE FROM merchants WHERE id LIKE $1", DEMO_LIKE)).split()[-1])
        report.payouts = len(payout_ids)
        report.journal_transactions = len(journal_ids)
        report.ops_actions = len(action_ids)
    finally:
        await conn.close()
    if span and span["first"]:
        try:
            await _rebuild(settings, span["first"], span["last"])
        except Exception as exc:  # noqa: BLE001 — the data is gone either way; say how to finish
            report.rollups_error = (f"{type(exc).__name__}: {exc}".splitlines()[0] + "; run `payops dashboard rebuild "
                                    f"--from {span['first']} --to {span['last']}`")
    return report


async def _rebuild(settings: Settings, first: date, last: date) -> None:
    engine = create_engine(settings.database_url)
    try:
        await rebuild_rollups(engine, first, last)
    finally:
        await engine.dispose()
