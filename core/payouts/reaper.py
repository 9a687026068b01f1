"""The workflow reaper: rows whose workflow closed under them.

Temporal's Terminate cannot be intercepted (nor can a cancel handled by a worker older than
patch payout-temporal-cancel-v1, or a Reset to a point before the hold was reversed): the
workflow ends and its payout row stays `dlq` or `routed`, its hold `active`, and nothing runs
that will ever release it. The reaper (a Schedule, PAYOPS_WORKFLOW_REAPER_EVERY_SECONDS) and
`payops ledger check` find them by describing the workflow of every row that is not terminal or
whose hold is still active; each one is a critical alert (deduped per row) that names its
repair: a REPAIR_PAYOUT ops action (compensate or restart) approved like any other.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

from sqlalchemy import func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from core.ledger import service as ledger
from core.alerts.service import raise_alert, resolve
from core.platform.errors import InvalidState, NotFound
from core.platform.names import ops_action_workflow_id, payout_workflow_id
from core.ops_actions.models import OPEN_STATUSES, ActionStatus
from core.ops_actions.store import get_action_row, record_step
from core.payouts.models import TERMINAL_STATUSES, PayoutStatus
from core.payouts.service import workflow_input
from core.platform.names import PAYOUT_WORKFLOW
from core.payouts.service import _search_attributes as payout_search_attributes
from core.payouts.store import event_insert, transition
from core.platform.db import create_engine, create_sessionmaker
from core.platform.settings import Settings
from core.platform.temporal import connect_temporal
from core.platform.tables import alerts, ledger_holds, ops_actions, payouts
from core.payouts.temporal_ops import OrphanedWorkflow, ReaperResult

log = logging.getLogger("payops.workflow_reaper")

ALERT_RULE = "workflow_closed_under_row"
NOT_FOUND = "NOT_FOUND"
DESCRIBE_CONCURRENCY = 16
# a submission may have reached the bank: reversing the hold could pay without funds
BANK_MAY_HAVE_IT = frozenset({PayoutStatus.SUBMITTING, PayoutStatus.SUBMITTED, PayoutStatus.RETRYING})


async def workflow_status(client: Client, workflow_id: str) -> str:
    """Temporal's status of the workflow's latest run (RUNNING, TERMINATED, ...) or NOT_FOUND."""
    try:
        desc = await client.get_workflow_handle(workflow_id).describe()
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            return NOT_FOUND
        raise
    return desc.status.name if desc.status is not None else "UNKNOWN"


async def _candidates(session: AsyncSession, *, min_age_seconds: float, limit: int,
                      holds_only: bool) -> list[OrphanedWorkflow]:
    older = func.now() - timedelta(seconds=min_age_seconds)
    hold_active = ledger_holds.c.status == "active"
    rows = (await session.execute(
        select(payouts.c.id, payouts.c.status, hold_active.label("hold_active"))
        .select_from(payouts.outerjoin(ledger_holds, ledger_holds.c.payout_id == payouts.c.id))
        .where(
            payouts.c.workflow_started_at.is_not(None),
            payouts.c.updated_at < older,
            hold_active if holds_only else or_(payouts.c.status.not_in(sorted(TERMINAL_STATUSES)), hold_active),
        )
        # a random sample when there are more than `limit`: successive passes cover them all
        .order_by(func.random()).limit(limit)
    )).mappings().all()
    found = [OrphanedWorkflow(kind="payout", id=r["id"], workflow_id=payout_workflow_id(r["id"]), status=r["status"],
                              workflow_status="", hold_active=bool(r["hold_active"])) for r in rows]
    if not holds_only:
        actions = (await session.execute(
            select(ops_actions.c.id, ops_actions.c.status)
            .where(ops_actions.c.status.in_(sorted(OPEN_STATUSES)), ops_actions.c.updated_at < older)
            .order_by(func.random()).limit(limit)
        )).mappings().all()
        found += [OrphanedWorkflow(kind="ops_action", id=r["id"], workflow_id=ops_action_workflow_id(r["id"]),
                                   status=r["status"], workflow_status="") for r in actions]
    return found


async def find_orphans(sessionmaker: async_sessionmaker[AsyncSession], client: Client, *,
                       min_age_seconds: float = 60.0, limit: int = 500,
                       holds_only: bool = False) -> tuple[int, list[OrphanedWorkflow]]:
    """(rows checked, the rows whose workflow is not running)."""
    async with sessionmaker() as session:
        candidates = await _candidates(session, min_age_seconds=min_age_seconds, limit=limit, holds_only=holds_only)
    slots = asyncio.Semaphore(DESCRIBE_CONCURRENCY)

    async def check(c: OrphanedWorkflow) -> OrphanedWorkflow | None:
        async with slots:
            c.workflow_status = await workflow_status(client, c.workflow_id)
        return None if c.workflow_status == WorkflowExecutionStatus.RUNNING.name else c

    checked = await asyncio.gather(*(check(c) for c in candidates))
    return len(candidates), [c for c in checked if c is not None]


def describe_orphan(o: OrphanedWorkflow) -> str:
    what = f"payout {o.id} is {o.status}" if o.kind == "payout" else f"ops action {o.id} is {o.status}"
    hold = " with its hold active" if o.hold_active else ""
    return f"{what}{hold} but its workflow {o.workflow_id} is {o.workflow_status}"


def repair_modes(payout_status: str) -> list[str]:
    """The REPAIR_PAYOUT modes that apply to a payout in this status whose workflow is closed:
    compensate unless the bank may have it, restart unless it ended (what repair_payout accepts)."""
    modes = ["restart"] if payout_status not in TERMINAL_STATUSES else []
    if payout_status not in BANK_MAY_HAVE_IT:
        modes.insert(0, "compensate")
    return modes


def repair_offer(o: OrphanedWorkflow) -> dict:
    """What the alert proposes: an ops action to create (and have approved)."""
    if o.kind != "payout":
        return {"endpoint": f"POST /api/v1/ops/actions/{o.id}/repair",
                "hint": "close the row (pending/approved -> expired, executing -> failed, audited), then "
                        "create the action again if it is still needed; check an executing one's effects"}
    modes = repair_modes(o.status)
    return {"action_type": "REPAIR_PAYOUT", "modes": modes,
            "params": {"payout_id": o.id, "mode": modes[0] if modes else "restart", "reason": "workflow closed"}}


async def reap(sessionmaker: async_sessionmaker[AsyncSession], client: Client, *, min_age_seconds: float,
               limit: int = 500) -> ReaperResult:
    """One reaper pass: a critical alert per orphaned row (deduped while open)."""
    checked, orphans = await find_orphans(sessionmaker, client, min_age_seconds=min_age_seconds, limit=limit)
    opened = 0
    if orphans:
        async with sessionmaker() as session, session.begin():
            for o in orphans:
                offer = repair_offer(o)
                modes = " or ".join(offer.get("modes", []))
                message = describe_orphan(o) + (
                    f": repair with a REPAIR_PAYOUT ops action (mode {modes})" if modes else
                    f": close it with {offer['endpoint']}" if "endpoint" in offer else "")
                alert = await raise_alert(
                    session, rule=ALERT_RULE, severity="critical", scope=f"{o.kind}:{o.id}", message=message,
                    data={**o.model_dump(), "repair": offer},
                )
                opened += bool(alert["opened"])
    return ReaperResult(checked=checked, orphaned=orphans, alerts_raised=opened)


# --- the repair (REPAIR_PAYOUT), executed by an approved ops action --------------------------


def repair_refusal(payout_id: str, mode: str, payout_status: str, hold_status: str | None) -> str | None:
    """Why a repair in this mode would move money wrongly (None: it may go ahead). The
    execution (repair_payout) and an approver's plan (core/ops_actions/plan.py) both ask this."""
    hold_active = hold_status == "active"
    if mode == "compensate":
        if payout_status in BANK_MAY_HAVE_IT:
            return (f"payout {payout_id} is {payout_status}: the bank may have it, so its hold "
                    "cannot be reversed blindly; restart it (the bank is asked, idempotently)")
        if payout_status in TERMINAL_STATUSES and not hold_active:
            return f"payout {payout_id} is {payout_status} and holds nothing: nothing to repair"
        return None
    if mode != "restart":
        return f"unknown repair mode {mode!r}"
    if payout_status in TERMINAL_STATUSES:
        return f"payout {payout_id} is {payout_status}: nothing to restart (compensate its hold)"
    if hold_status is not None and not hold_active:
        return f"payout {payout_id}'s hold is {hold_status}: a new run would pay without funds"
    return None


async def repair_payout(sessionmaker: async_sessionmaker[AsyncSession], client: Client, settings: Settings, *,
                        payout_id: str, mode: str, reason: str, actor: str, action_id: str) -> dict:
    """compensate: reverse the active hold, the payout `failed` (workflow_closed), audited.
    restart: a new run of the payout's workflow (its steps are idempotent: the hold, the bank's
    reference). Refused (InvalidState) while its workflow runs, and where it would move money
    wrongly: compensate once the bank may have it, restart once the payout ended or its hold is gone."""
    workflow_id = payout_workflow_id(payout_id)
    running = await workflow_status(client, workflow_id)
    if running == WorkflowExecutionStatus.RUNNING.name:
        raise InvalidState(f"payout {payout_id}'s workflow is running: cancel or retry it instead")
    async with sessionmaker() as session, session.begin():
        row = (await session.execute(select(payouts).where(payouts.c.id == payout_id).with_for_update())).mappings().first()
        if row is None:
            raise NotFound(f"payout {payout_id} not found")
        row = dict(row)
        hold = await ledger.get_hold(session, payout_id)
        hold_active = hold is not None and hold.status == "active"
        refusal = repair_refusal(payout_id, mode, row["status"], hold.status if hold is not None else None)
        if refusal is not None:
            raise InvalidState(refusal)
        if mode == "compensate":
            event_key = f"repair:{action_id}"
            data = {"ops_action_id": action_id, "mode": mode, "workflow_status": running}
            if row["status"] not in TERMINAL_STATUSES:
                row, _ = await transition(
                    session, payout_id=payout_id, to_status=PayoutStatus.FAILED, event_key=event_key, actor=actor,
                    reason=f"repair: {reason}", failure_code="workflow_closed",
                    failure_message=f"its workflow was {running}; hold reversed by ops action {action_id}", data=data)
            else:
                await session.execute(event_insert(
                    payout_id=payout_id, actor=actor, from_status=row["status"], to_status=row["status"],
                    reason=f"repair: {reason}", data={**data, "event_key": event_key}))
            if hold_active:
                await ledger.reverse_hold(session, payout_id=payout_id, reason=f"repair by ops action {action_id}")
            return {"payout_id": payout_id, "mode": mode, "status": row["status"], "hold_reversed": hold_active}
        await session.execute(event_insert(
            payout_id=payout_id, actor=actor, from_status=row["status"], to_status=row["status"],
            reason=f"repair: {reason}",
            data={"ops_action_id": action_id, "mode": mode, "workflow_status": running,
                  "event_key": f"repair:{action_id}"}))
    try:
        handle = await client.start_workflow(
            PAYOUT_WORKFLOW, workflow_input(row, settings), id=workflow_id, task_queue=settings.temporal_task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
            search_attributes=payout_search_attributes(row),
        )
    except WorkflowAlreadyStartedError:
        return {"payout_id": payout_id, "mode": mode, "status": row["status"], "detail": "already running"}
    return {"payout_id": payout_id, "mode": mode, "status": row["status"], "run_id": handle.result_run_id}


# --- the repair of an ops action whose workflow closed under it ------------------------------


async def repair_ops_action(sessionmaker: async_sessionmaker[AsyncSession], client: Client, *, action_id: str,
                            actor: str, reason: str) -> dict:
    """Close an open ops-action row whose workflow is closed (terminated, ...): nothing will ever
    decide it. pending_approval / approved (never executed) -> expired; executing -> failed (its
    effects may be partial: the audit says so). Audited; the reaper's alert is resolved. Refused
    while its workflow runs, or when it has none yet (its first vote starts it)."""
    workflow_id = ops_action_workflow_id(action_id)
    running = await workflow_status(client, workflow_id)
    async with sessionmaker() as session, session.begin():
        row = await get_action_row(session, action_id, for_update=True)
        if row["status"] not in OPEN_STATUSES:
            raise InvalidState(f"ops action {action_id} is already {row['status']}: nothing to repair")
        if running == WorkflowExecutionStatus.RUNNING.name:
            raise InvalidState(f"ops action {action_id}'s workflow is running: it decides the action itself")
        if running == NOT_FOUND:
            raise InvalidState(f"ops action {action_id} has no workflow yet: its first approval starts it")
        was = row["status"]
        to = ActionStatus.FAILED if was == ActionStatus.EXECUTING else ActionStatus.EXPIRED
        error = (f"its workflow was {running} while it was executing: its effects may be partial; "
                 f"closed by {actor}: {reason}") if to == ActionStatus.FAILED else None
        row, _ = await record_step(
            session, action_id=action_id, event_key="repair:workflow-closed", event="repaired", actor=actor,
            to_status=to, error=error,
            data={"workflow_status": running, "was": was, "reason": reason,
                  "effects_may_be_partial": was == ActionStatus.EXECUTING},
        )
        alert_ids = (await session.scalars(select(alerts.c.id).where(
            alerts.c.dedupe_key == f"{ALERT_RULE}:ops_action:{action_id}", alerts.c.status.in_(("open", "acknowledged"))))).all()
        for alert_id in alert_ids:
            await resolve(session, alert_id, actor=actor, merchant_id=None)
    return {"action_id": action_id, "status": row["status"], "was": was, "workflow_status": running,
            "alerts_resolved": len(alert_ids)}


# --- `payops ledger check`: an active hold whose workflow is closed -----------------------------

HOLD_VIOLATION = "closed_workflow_hold"


async def closed_workflow_hold_violations(sessionmaker: async_sessionmaker[AsyncSession],
                                          client: Client) -> list[str]:
    """"closed_workflow_hold: ..." for every active hold whose payout's workflow is not running
    (nothing will ever release or reverse it). The ledger's own check finds the terminal ones."""
    _, orphans = await find_orphans(sessionmaker, client, min_age_seconds=0, limit=10_000, holds_only=True)
    return [f"{HOLD_VIOLATION}: {describe_orphan(o)}; repair: REPAIR_PAYOUT mode "
            f"{' or '.join(repair_offer(o)['modes']) or 'compensate'}" for o in orphans]


async def check_closed_workflow_holds(settings: Settings) -> list[str]:
    """The CLI's entry: its own engine and Temporal client. Raises when Temporal is unreachable
    while there are active holds to ask about."""
    engine = create_engine(settings.database_url, pool_size=1, max_overflow=0)
    try:
        sessionmaker = create_sessionmaker(engine)
        async with sessionmaker() as session:  # no active hold, no question for Temporal
            if not await _candidates(session, min_age_seconds=0, limit=1, holds_only=True):
                return []
        client = await connect_temporal(settings)
        return await closed_workflow_hold_violations(sessionmaker, client)
    finally:
        await engine.dispose()
