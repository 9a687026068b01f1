"""An ops action's plan: what executing it would do, computed now, for approvers to read before
they sign (GET /api/v1/ops/actions/{id}/plan).

Read-only. Each type's plan asks the same store / service functions its execution uses
(core/payouts/store.py's waiting_payouts / dlq_payouts, core/ops_actions/store.py's active controls,
core/payouts/reaper.repair_refusal,
core/payouts/bulk.release_preview, the ledger's balances), so the plan cannot select other payouts
than the execution would. Things only the moment of execution can decide (a payout's workflow
refusing a retry, a workflow still running) are named as such in `notes`.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from core.ledger import service as ledger
from core.merchants import bank_accounts
from core.merchants.service import get_merchant
from core.platform.errors import NotFound
from core.ops_actions import store
from core.ops_actions.models import (
    SPECS,
    ActionType,
    AdjustBalanceParams,
    ApproveBankAccountParams,
    ApproveBulkPayoutParams,
    CancelPayoutParams,
    ClearRouteOverrideParams,
    FreezeMerchantParams,
    PausePayoutsParams,
    RepairPayoutParams,
    ResumePayoutsParams,
    RetryPayoutsParams,
    RouteOverrideParams,
    SetKycStatusParams,
    UnfreezeMerchantParams,
)
from core.payouts import bulk
from core.payouts import store as payout_store
from core.payouts.models import CANCELLABLE_STATUSES, PayoutStatus
from core.payouts.reaper import repair_refusal


class Plan:
    """Collects a plan's parts; `view()` is the JSON the API returns."""

    def __init__(self, action: dict) -> None:
        self.action = action
        self.summary = ""
        self.payouts: list[dict] = []
        self.amounts: list[dict] = []
        self.controls: list[dict] = []
        self.routes: list[dict] = []
        self.merchants: list[dict] = []
        self.notes: list[str] = []
        self.refusal: str | None = None

    def payout(self, row: dict, effect: str, detail: str | None = None) -> None:
        hold = row.get("hold_minor") if row.get("hold_status") == "active" else None
        self.payouts.append({
            "payout_id": row["id"], "merchant_id": row["merchant_id"], "status": row["status"],
            "amount_minor": row["amount_minor"], "fee_minor": row["fee_minor"], "currency": row["currency"],
            "rail": row["rail"], "connector": row["connector"], "held_minor": hold, "effect": effect,
            "detail": detail,
        })

    def amount(self, effect: str, currency: str, minor: int, account: str) -> None:
        for a in self.amounts:
            if (a["effect"], a["currency"], a["account"]) == (effect, currency, account):
                a["amount_minor"] += minor
                return
        self.amounts.append({"effect": effect, "currency": currency, "amount_minor": minor, "account": account})

    def view(self) -> dict:
        return {
            "action_id": self.action["id"], "type": self.action["action_type"], "status": self.action["status"],
            "computed_at": datetime.now(timezone.utc), "summary": self.summary,
            "would_refuse": self.refusal, "payouts": self.payouts, "amounts": self.amounts,
            "controls": self.controls, "routes": self.routes, "merchants": self.merchants, "notes": self.notes,
        }


def _held_amounts(plan: Plan, rows: list[dict], effect: str, merchant_account: str) -> None:
    for r in rows:
        if r.get("hold_status") == "active":
            plan.amount(effect, r["currency"], r["hold_minor"], merchant_account.format(merchant=r["merchant_id"]))


async def _freeze(session: AsyncSession, plan: Plan, p: FreezeMerchantParams) -> None:
    active = await store.active_controls(session, "merchant_freeze", p.merchant_id)
    if active and active[0]["action_id"] != plan.action["id"]:
        plan.refusal = f"merchant freeze on {p.merchant_id} is already active (action {active[0]['action_id']})"
    plan.controls.append({"kind": "merchant_freeze", "target": p.merchant_id, "change": "activate",
                          "control_ids": []})
    plan.merchants.append({"merchant_id": p.merchant_id, "change": "frozen"})
    waiting = await payout_store.waiting_payouts(session, merchant_id=p.merchant_id)
    if p.cancel_queued:
        for r in waiting:
            plan.payout(r, "cancel", "cancelled before submission, hold reversed (merchant_frozen)")
        _held_amounts(plan, waiting, "released_to_available", "merchant:{merchant}:available")
        plan.summary = (f"Freeze merchant {p.merchant_id}: new payouts refused; {len(waiting)} waiting payout(s) "
                        "cancelled and their holds returned to available.")
    else:
        for r in waiting:
            plan.payout(r, "wait", "waits at the submission gate until the merchant is unfrozen")
        _held_amounts(plan, waiting, "stays_held", "merchant:{merchant}:held")
        plan.summary = (f"Freeze merchant {p.merchant_id}: new payouts refused; {len(waiting)} waiting payout(s) "
                        "stay held until it is unfrozen.")
    plan.notes.append("payouts created or routed after this plan wait too (the gate is checked before submission)")


async def _unfreeze(session: AsyncSession, plan: Plan, p: UnfreezeMerchantParams) -> None:
    active = await store.active_controls(session, "merchant_freeze", p.merchant_id)
    if not active:
        plan.notes.append(f"merchant {p.merchant_id} is not frozen now: nothing to lift")
    plan.controls.append({"kind": "merchant_freeze", "target": p.merchant_id, "change": "deactivate",
                          "control_ids": [c["id"] for c in active]})
    plan.merchants.append({"merchant_id": p.merchant_id, "change": "unfrozen"})
    waiting = await payout_store.waiting_payouts(session, merchant_id=p.merchant_id)
    for r in waiting:
        plan.payout(r, "proceed", "woken: goes on to the bank unless another control holds it")
    plan.summary = f"Unfreeze merchant {p.merchant_id}: {len(waiting)} waiting payout(s) go on to the bank."


async def _pause(session: AsyncSession, plan: Plan, p: PausePayoutsParams) -> None:
    kind, target = p.control
    active = await store.active_controls(session, kind, target)
    if active and active[0]["action_id"] != plan.action["id"]:
        plan.refusal = f"{kind.replace('_', ' ')} on {target} is already active (action {active[0]['action_id']})"
    plan.controls.append({"kind": kind, "target": target, "change": "activate", "control_ids": []})
    scope = {"rail": target} if kind == "rail_pause" else {"connector": target}
    waiting = await payout_store.waiting_payouts(session, **scope)
    for r in waiting:
        plan.payout(r, "wait", f"waits at the submission gate until {target} is resumed")
    _held_amounts(plan, waiting, "stays_held", "merchant:{merchant}:held")
    what = "rail" if kind == "rail_pause" else "connector"
    plan.summary = f"Pause {what} {target}: {len(waiting)} payout(s) not yet submitted on it wait until it resumes."
    if kind == "connector_pause":
        plan.notes.append(f"routing avoids connector {target} for new payouts while it is paused")


async def _resume(session: AsyncSession, plan: Plan, p: ResumePayoutsParams) -> None:
    kind, target = p.control
    active = await store.active_controls(session, kind, target)
    if not active:
        plan.notes.append(f"{target} is not paused now: nothing to lift")
    plan.controls.append({"kind": kind, "target": target, "change": "deactivate",
                          "control_ids": [c["id"] for c in active]})
    scope = {"rail": target} if kind == "rail_pause" else {"connector": target}
    waiting = await payout_store.waiting_payouts(session, **scope)
    for r in waiting:
        plan.payout(r, "proceed", "woken: goes on to the bank unless another control holds it")
    plan.summary = f"Resume {target}: {len(waiting)} waiting payout(s) go on to the bank."


def _override_scope(p) -> dict:
    return {"merchant_id": p.merchant_id} if p.merchant_id else {"rail": p.rail}


async def _route_override(session: AsyncSession, plan: Plan, p: RouteOverrideParams) -> None:
    active = await store.active_controls(session, "route_override", p.control_target)
    current = active[0] if active else None
    if current is not None and current["action_id"] != plan.action["id"]:
        plan.refusal = (f"route override on {p.control_target} is already active "
                        f"(action {current['action_id']}): clear it first")
    plan.controls.append({"kind": "route_override", "target": p.control_target, "change": "activate",
                          "control_ids": []})
    plan.routes.append({
        "target": p.control_target,
        "from_connector": ((current or {}).get("params") or {}).get("connector"),
        "to_connector": p.connector, "until": p.until.isoformat(),
    })
    queued = await payout_store.waiting_payouts(session, **_override_scope(p))
    for r in queued:
        plan.payout(r, "unchanged", "already routed: keeps its connector")
    plan.summary = (f"Route {p.control_target}'s new payouts to connector {p.connector} until "
                    f"{p.until.isoformat()}; {len(queued)} already-routed payout(s) keep their route.")
    if p.until <= datetime.now(timezone.utc):
        plan.notes.append("until is already past: routing ignores an expired override")


async def _clear_route_override(session: AsyncSession, plan: Plan, p: ClearRouteOverrideParams) -> None:
    active = await store.active_controls(session, "route_override", p.control_target)
    plan.controls.append({"kind": "route_override", "target": p.control_target, "change": "deactivate",
                          "control_ids": [c["id"] for c in active]})
    for c in active:
        plan.routes.append({"target": p.control_target, "from_connector": (c["params"] or {}).get("connector"),
                            "to_connector": None, "until": None})
    if not active:
        plan.notes.append(f"no active route override on {p.control_target}: nothing to clear")
    plan.summary = (f"End the route override on {p.control_target}: routing chooses the connector again."
                    if active else f"Nothing to clear on {p.control_target}.")


async def _retry_payouts(session: AsyncSession, plan: Plan, p: RetryPayoutsParams) -> None:
    if p.filter is not None:
        f = p.filter
        rows = await payout_store.dlq_payouts(session, merchant_id=f.merchant_id, rail=f.rail, connector=f.connector,
                                       limit=f.limit)
        for r in rows:
            plan.payout(r, "retry", "sent back to the bank with a fresh retry budget")
        plan.notes.append("a filter is applied at execution time: dlq payouts arriving before then are included")
    else:
        ids = list(dict.fromkeys(p.payout_ids or []))
        found = await payout_store.payouts_with_holds(session, ids)
        rows = []
        for pid in ids:
            r = found.get(pid)
            if r is None:
                plan.payouts.append({"payout_id": pid, "merchant_id": None, "status": None, "amount_minor": None,
                                     "fee_minor": None, "currency": None, "rail": None, "connector": None,
                                     "held_minor": None, "effect": "not_found", "detail": "no such payout"})
            elif r["status"] != PayoutStatus.DLQ.value:
                plan.payout(r, "refused", f"it is {r['status']}, not dlq: its workflow refuses a retry")
            else:
                rows.append(r)
                plan.payout(r, "retry", "sent back to the bank with a fresh retry budget")
    for r in rows:
        plan.amount("to_bank", r["currency"], r["amount_minor"], f"merchant:{r['merchant_id']}:held")
    plan.summary = f"Retry {len(rows)} dlq payout(s)."


async def _cancel_payout(session: AsyncSession, plan: Plan, p: CancelPayoutParams) -> None:
    row = (await payout_store.payouts_with_holds(session, [p.payout_id])).get(p.payout_id)
    if row is None:
        plan.refusal = f"payout {p.payout_id} not found"
        plan.summary = plan.refusal
        return
    if row["status"] == PayoutStatus.CANCELLED.value:
        plan.payout(row, "unchanged", "already cancelled")
        plan.summary = f"Payout {p.payout_id} is already cancelled: nothing to do."
        return
    if row["status"] not in CANCELLABLE_STATUSES:
        plan.refusal = f"payout {p.payout_id} is {row['status']}: it may have reached the bank, it cannot be cancelled"
        plan.payout(row, "refused", plan.refusal)
        plan.summary = plan.refusal
        return
    plan.payout(row, "cancel", "cancelled; its hold is reversed")
    _held_amounts(plan, [row], "released_to_available", "merchant:{merchant}:available")
    plan.summary = f"Cancel payout {p.payout_id} ({row['amount_minor']} {row['currency']} minor units)."


async def _repair_payout(session: AsyncSession, plan: Plan, p: RepairPayoutParams) -> None:
    row = (await payout_store.payouts_with_holds(session, [p.payout_id])).get(p.payout_id)
    if row is None:
        plan.refusal = f"payout {p.payout_id} not found"
        plan.summary = plan.refusal
        return
    plan.refusal = repair_refusal(p.payout_id, p.mode, row["status"], row["hold_status"])
    if plan.refusal:
        plan.payout(row, "refused", plan.refusal)
        plan.summary = plan.refusal
    elif p.mode == "compensate":
        plan.payout(row, "fail", "marked failed (workflow_closed)")
        _held_amounts(plan, [row], "released_to_available", "merchant:{merchant}:available")
        plan.summary = f"Compensate payout {p.payout_id}: failed, its active hold reversed."
    else:
        plan.payout(row, "restart", "a new run of its workflow (idempotent: the bank is asked, never paid twice)")
        plan.summary = f"Restart payout {p.payout_id}'s workflow."
    plan.notes.append("refused at execution if the payout's workflow is running then")


async def _approve_bulk_payout(session: AsyncSession, plan: Plan, p: ApproveBulkPayoutParams) -> None:
    preview = await bulk.release_preview(session, p.bulk_payout_id)
    if preview is None:
        plan.refusal = f"bulk payout {p.bulk_payout_id} not found"
        plan.summary = plan.refusal
        return
    if preview["status"] != bulk.AWAITING_APPROVAL:
        plan.notes.append(f"bulk payout {p.bulk_payout_id} is {preview['status']}: releasing it again creates nothing")
        plan.summary = f"Nothing to release: bulk payout {p.bulk_payout_id} is {preview['status']}."
        return
    for t in preview["totals"]:
        plan.amount("payouts_created", t["currency"], t["amount_minor"], f"merchant:{p.merchant_id}:available")
    plan.merchants.append({"merchant_id": p.merchant_id, "change": f"{preview['items']} payouts created"})
    plan.summary = (f"Release bulk payout {p.bulk_payout_id}: {preview['items']} payout(s) created and started ("
                    + ", ".join(f"{t['count']} x {t['currency']} totalling {t['amount_minor']}" for t in
                                preview["totals"]) + " minor units).")
    plan.notes.append("a reference taken by another payout meanwhile is rejected as a duplicate at execution "
                      f"(mode {preview['mode']})")


async def _adjust_balance(session: AsyncSession, plan: Plan, p: AdjustBalanceParams) -> None:
    balances = {b.currency: b for b in await ledger.get_balances(session, p.merchant_id)}
    available = balances[p.currency].available_minor if p.currency in balances else 0
    after = available + p.amount_minor
    if after < 0:
        plan.refusal = (f"merchant {p.merchant_id} has {available} {p.currency} available: a debit of "
                        f"{-p.amount_minor} would take it below zero (the ledger refuses it)")
    plan.amount("credited" if p.amount_minor > 0 else "debited", p.currency, abs(p.amount_minor),
                f"merchant:{p.merchant_id}:available")
    plan.merchants.append({"merchant_id": p.merchant_id, "change": "balance adjusted", "currency": p.currency,
                           "available_before_minor": available, "available_after_minor": after})
    plan.summary = (f"{'Credit' if p.amount_minor > 0 else 'Debit'} merchant {p.merchant_id}'s available "
                    f"{p.currency} balance by {abs(p.amount_minor)} minor units: {available} -> {after}.")


async def _set_kyc_status(session: AsyncSession, plan: Plan, p: SetKycStatusParams) -> None:
    try:
        merchant = await get_merchant(session, p.merchant_id)
    except NotFound as exc:
        plan.refusal = plan.summary = str(exc)
        return
    current = merchant["kyc_status"]
    plan.merchants.append({"merchant_id": p.merchant_id, "change": "kyc_status", "from_status": current,
                           "to_status": p.status.value})
    if current == p.status.value:
        plan.notes.append(f"the KYC status is already {current}: executing it records the change again")
    plan.summary = f"Set merchant {p.merchant_id}'s KYC status {current} -> {p.status.value} ({p.reason})."
    if p.status.value == "verified":
        plan.notes.append("the merchant may then withdraw to its usable bank accounts")
    elif current == "verified":
        plan.notes.append("the merchant can no longer withdraw; payouts already created go on")


async def _approve_bank_account(session: AsyncSession, plan: Plan, p: ApproveBankAccountParams) -> None:
    try:
        account = await bank_accounts.get_account(session, p.merchant_id, p.account_id)
    except NotFound as exc:
        plan.refusal = plan.summary = str(exc)
        return
    details = account["details"]
    change = {"merchant_id": p.merchant_id, "change": "bank_account_approved" if p.approve else "bank_account_rejected",
              "account_id": p.account_id, "rail": account["rail"], "currency": account["currency"],
              "last4": details.get("last4"), "from_status": account["status"],
              "effective_at_before": account["effective_at"].isoformat() if account["effective_at"] else None}
    plan.merchants.append(change)
    if p.approve and account["status"] == "rejected":
        plan.refusal = f"bank account {p.account_id} was rejected: it cannot be approved"
        plan.summary = plan.refusal
    elif p.approve:
        plan.summary = (f"Approve {p.merchant_id}'s {account['rail']} {account['currency']} account ending "
                        f"{details.get('last4')}: withdrawals may go to it from the execution on"
                        + (" (its cool-off ends early)." if account["cooling_off"] else "."))
        if account["replaces_id"]:
            plan.notes.append(f"it replaces account {account['replaces_id']}, which is superseded from then on")
    else:
        plan.summary = (f"Reject {p.merchant_id}'s {account['rail']} {account['currency']} account ending "
                        f"{details.get('last4')}: no withdrawal can go to it.")


_PLANNERS: dict[ActionType, Any] = {
    ActionType.FREEZE_MERCHANT: _freeze,
    ActionType.UNFREEZE_MERCHANT: _unfreeze,
    ActionType.PAUSE_PAYOUTS: _pause,
    ActionType.RESUME_PAYOUTS: _resume,
    ActionType.ROUTE_OVERRIDE: _route_override,
    ActionType.CLEAR_ROUTE_OVERRIDE: _clear_route_override,
    ActionType.RETRY_PAYOUTS: _retry_payouts,
    ActionType.CANCEL_PAYOUT: _cancel_payout,
    ActionType.REPAIR_PAYOUT: _repair_payout,
    ActionType.APPROVE_BULK_PAYOUT: _approve_bulk_payout,
    ActionType.ADJUST_BALANCE: _adjust_balance,
    ActionType.SET_KYC_STATUS: _set_kyc_status,
    ActionType.APPROVE_BANK_ACCOUNT: _approve_bank_account,
}


async def plan_action(session: AsyncSession, action_id: str) -> dict:
    """The plan of an action (NotFound for an unknown id). Computed for any status; for an action
    no longer open it says what executing it now would do, with a note."""
    row = await store.get_action_row(session, action_id)
    kind = ActionType(row["action_type"])
    plan = Plan(row)
    await _PLANNERS[kind](session, plan, SPECS[kind].params.model_validate(row["params"]))
    if row["status"] in ("executed", "failed", "rejected", "expired"):
        plan.notes.insert(0, f"the action is {row['status']}: this is what executing it now would do; "
                             "it will not execute again")
    return plan.view()
