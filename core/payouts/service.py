"""Payouts as the API sees them: idempotent creation, starting (and healing) the workflow, reads
scoped to a merchant, ops updates, stats, and delivering bank notifications to the workflow.

The workflow owns the payout after creation (hold, routing, submission, status changes); this
module only creates the row in status `pending` and starts the workflow once the row is committed.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any

from sqlalchemy import bindparam, func, insert, select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.exc import IntegrityError
from temporalio.client import Client, WorkflowUpdateFailedError
from temporalio.common import SearchAttributePair, TypedSearchAttributes, WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from core.platform import idempotency
from core.platform.crypto import FieldCipher
from core.platform.errors import (
    IdempotencyKeyReused, InvalidState, MerchantFrozen, NotFound, ServiceUnavailable, Unprocessable,
)
from core.merchants.service import frozen_clause
from core.rails.store import rule_fee
from core.platform.metrics import payouts_created_total
from core.platform.money import format_amount, parse_amount
from core.platform.pagination import decode_time_id_cursor, time_id_cursor
from core.platform.names import PAYOUT_WORKFLOW, payout_workflow_id, search_attribute_keys
from core.payouts.models import (
    CANCELLABLE_STATUSES,
    TERMINAL_STATUSES,
    BankNotificationSignal,
    CancelRequest,
    OpsDecision,
    PayoutState,
    PayoutStatus,
    PayoutWorkflowInput,
    RetryRequest,
)
from core.payouts.store import event_insert, get_payout_row
from core.payouts.view import payout_view
from core.payouts.routing import choose_rail
from core.platform.settings import Settings
from core.platform.temporal import describe_status, query_live_state
from core.platform.tables import events, merchants, payout_events, payouts, rail_rules
from core.webhooks.events import payout_event_values
from core.webhooks.models import EventType

log = logging.getLogger("payops.payouts")

CREATE_SCOPE = "payouts.create"
QUERY_TIMEOUT_SECONDS = 3.0
UPDATE_TIMEOUT_SECONDS = 15.0


# --- presentation -----------------------------------------------------------------------------


def mask_beneficiary(beneficiary: dict) -> dict:
    """What may be shown and logged: the type, the name, last 4 of the account, the bank's id."""
    kind = beneficiary["type"]
    account = (
        beneficiary.get("iban")
        or beneficiary.get("account_number")
        or beneficiary.get("phone")
        or ""
    )
    masked = {"type": kind, "name": beneficiary["name"], "last4": account[-4:]}
    for field in ("bic", "routing_number", "account_type", "sort_code", "operator"):
        if beneficiary.get(field):
            masked[field] = beneficiary[field]
    if beneficiary.get("iban"):
        masked["country"] = beneficiary["iban"][:2]
    return masked


@lru_cache(maxsize=4)
def _cipher(keys_spec: str) -> FieldCipher:
    return FieldCipher(keys_spec)


# --- creation -----------------------------------------------------------------------------------


def workflow_input(row: dict, settings: Settings) -> PayoutWorkflowInput:
    return PayoutWorkflowInput(
        payout_id=row["id"],
        merchant_id=row["merchant_id"],
        amount_minor=row["amount_minor"],
        fee_minor=row["fee_minor"],
        currency=row["currency"],
        method=row["method"],
        priority=row["priority"],
        created_at=row["created_at"],
        retry_initial_seconds=settings.payout_retry_initial_seconds,
        retry_backoff=settings.payout_retry_backoff,
        retry_max_interval_seconds=settings.payout_retry_max_interval_seconds,
        retry_max_attempts=settings.payout_retry_max_attempts,
        dlq_expiry_seconds=settings.payout_dlq_expiry_hours * 3600,
        return_window_seconds=settings.payout_return_window_hours * 3600,
        settlement_poll_seconds=settings.payout_settlement_poll_seconds,
        return_poll_intervals=list(settings.payout_return_poll_intervals),
        inquiry_continue_as_new_after=settings.payout_inquiry_continue_as_new_after,
        hold_expiry_seconds=settings.payout_hold_expiry_hours * 3600,
        failover_codes=[c.strip() for c in settings.payout_failover_codes.split(",") if c.strip()],
        failover_attempts_per_connector=settings.payout_failover_attempts_per_connector,
    )


def _search_attributes(row: dict) -> TypedSearchAttributes:
    keys = search_attribute_keys()
    return TypedSearchAttributes(
        [
            SearchAttributePair(keys["MerchantId"], row["merchant_id"]),
            SearchAttributePair(keys["PayoutStatus"], PayoutStatus.PENDING.value),
            SearchAttributePair(keys["Rail"], row["rail"] or ""),
            SearchAttributePair(keys["AmountMinor"], row["amount_minor"]),
            SearchAttributePair(keys["Currency"], row["currency"]),
        ]
    )


async def start_payout_workflow(temporal: Client | None, settings: Settings, row: dict) -> bool:
    """Start the payout's workflow; True when it exists afterwards (started now or before).

    Safe to call any number of times: an open workflow with this id is reused, and a closed one
    is never started again (REJECT_DUPLICATE), so a retry can never run a payout twice.
    """
    if temporal is None:
        return False
    try:
        await temporal.start_workflow(
            PAYOUT_WORKFLOW,
            workflow_input(row, settings),
            id=payout_workflow_id(row["id"]),
            task_queue=settings.temporal_task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            search_attributes=_search_attributes(row),
        )
    except WorkflowAlreadyStartedError:
        return True  # it ran (and closed) already
    except Exception as exc:  # noqa: BLE001 — Temporal down: the sweeper or a replay starts it
        log.warning("could not start the workflow of payout %s (will heal): %s", row["id"], exc)
        return False
    return True


async def _mark_started(session: AsyncSession, payout_id: str) -> None:
    await session.execute(
        update(payouts)
        .where(payouts.c.id == payout_id, payouts.c.workflow_started_at.is_(None))
        .values(workflow_started_at=func.now())
    )


async def ensure_workflow_started(
    session: AsyncSession, temporal: Client | None, settings: Settings, payout_id: str
) -> None:
    """Heal a payout whose workflow may not have started (a crash or Temporal outage at creation)."""
    row = await get_payout_row(session, payout_id)
    if row["workflow_started_at"] is None and await start_payout_workflow(temporal, settings, row):
        await _mark_started(session, payout_id)
        await session.commit()


# The columns a new payout row leaves at their defaults (tables.py), as RETURNING would give them
# back: create_payout builds the row it answers with from its values and these, instead of a
# second round trip. tests/payouts/test_api_payouts.py checks them against the table.
NEW_PAYOUT_DEFAULTS: dict[str, Any] = {
    "connector": None, "failure_code": None, "failure_message": None, "bank_payment_id": None,
    "attempts": 0, "version": 1, "routing": None, "settlement_target_at": None, "workflow_started_at": None,
    "submitted_at": None, "settled_at": None, "reconciled_at": None, "metadata": {}, "description": None,
}


_b = bindparam
# What a payout create reads beside its idempotency claim, in the claim's statement (one round
# trip): the merchant exists, is not frozen, the key never created a payout, the rail's fee rule
# (the built-in default when rail_rules has none), and the transaction's timestamp (the new row's
# created_at/updated_at); for a replay, whether the key's payout has its workflow. Built once:
# parameters ctx_merchant_id, ctx_key, ctx_rail.
_rule = select(rail_rules.c.fee_fixed_minor, rail_rules.c.fee_bps).where(rail_rules.c.rail == _b("ctx_rail"))
CREATE_CONTEXT = idempotency.ClaimContext(
    select(merchants.c.id).where(merchants.c.id == _b("ctx_merchant_id")).scalar_subquery().label("merchant"),
    frozen_clause(_b("ctx_merchant_id")).label("frozen"),
    select(payouts.c.id)
    .where(payouts.c.merchant_id == _b("ctx_merchant_id"), payouts.c.idempotency_key == _b("ctx_key"))
    .scalar_subquery()
    .label("earlier"),
    _rule.with_only_columns(rail_rules.c.fee_fixed_minor).scalar_subquery().label("fee_fixed_minor"),
    _rule.with_only_columns(rail_rules.c.fee_bps).scalar_subquery().label("fee_bps"),
    func.now().label("now"),
    select(payouts.c.workflow_started_at.is_not(None))
    .where(payouts.c.id == idempotency.idempotency_keys.c.resource_id)
    .scalar_subquery()
    .label("started"),
)
_PAYOUT_VALUES = ("id", "merchant_id", "idempotency_key", "amount_minor", "currency", "fee_minor", "method",
                  "priority", "rail", "status", "beneficiary_encrypted", "beneficiary_masked", "description",
                  "metadata", "created_at", "updated_at")
_EVENT_VALUES = ("id", "merchant_id", "type", "payout_id", "payout_version", "data")


@lru_cache(maxsize=1)
def _create_write():
    """The one statement that writes a new payout (built once; parameters p_<column>,
    ev_<column>, actor, audit_data, key, body): the payout, its `created` audit event (a
    brand-new payout: no earlier event to deduplicate against), the merchant event (webhook
    outbox) and the stored response, as data-modifying CTEs of the response's UPDATE."""
    audit = event_insert(
        payout_id=_b("p_id"), actor=_b("actor"), from_status=None, to_status=PayoutStatus.PENDING.value,
        reason="created through the API", data=_b("audit_data"),
    )
    return idempotency.response_update(
        merchant_id=_b("p_merchant_id"), scope=CREATE_SCOPE, key=_b("p_idempotency_key"),
        resource_id=_b("p_id"), status=201, body=_b("body"),
    ).add_cte(
        payouts.insert().values({c: _b(f"p_{c}") for c in _PAYOUT_VALUES}).cte("created_payout"),
        audit.cte("created_audit_event"),
        insert(events).values({c: _b(f"ev_{c}") for c in _EVENT_VALUES}).cte("created_merchant_event"),
    )


async def create_payout(
    session: AsyncSession,
    temporal: Client | None,
    settings: Settings,
    *,
    merchant_id: str,
    actor: str,
    idempotency_key: str,
    request: dict,
) -> tuple[int, dict]:
    """Create a payout once per (merchant, Idempotency-Key). Returns (http status, body).

    `request` is the validated body (JSON-ready). One transaction claims the key, inserts the
    payout and its `created` event and stores the response; after the commit the workflow is
    started. A replay returns the stored response (200) and starts the workflow if it never was.
    """
    currency, method, priority = request["currency"], request["method"], request["priority"]
    try:
        rail: str | None = choose_rail(method, currency, priority)
    except Unprocessable as exc:  # raised after the claim: a replay's stored answer comes first
        rail, rail_error = None, exc
    claim = await idempotency.claim_key(
        session,
        merchant_id=merchant_id,
        scope=CREATE_SCOPE,
        key=idempotency_key,
        request_fingerprint=idempotency.fingerprint({"merchant_id": merchant_id, "body": request}),
        ttl_hours=settings.idempotency_ttl_hours,
        context=CREATE_CONTEXT,
        context_params={"ctx_merchant_id": merchant_id, "ctx_key": idempotency_key, "ctx_rail": rail or ""},
    )
    if not claim.is_new:
        started = claim.resource_id is None or claim.context.get("started")
        if started is None:  # not read with the claim (a concurrent first request): read it now
            started = await session.scalar(
                select(payouts.c.workflow_started_at.is_not(None)).where(payouts.c.id == claim.resource_id)
            )
        await session.commit()  # release the read before talking to Temporal
        if not started:  # heal a payout whose workflow never started (crash or outage at creation)
            await ensure_workflow_started(session, temporal, settings, claim.resource_id)
        return 200, claim.response_body or {}

    if rail is None:
        raise rail_error
    amount_minor = parse_amount(request["amount"], currency)
    ctx = claim.context
    if ctx["merchant"] is None:
        raise NotFound(f"merchant {merchant_id} not found")
    if ctx["frozen"]:
        raise MerchantFrozen(f"merchant {merchant_id} is frozen: it cannot create payouts")
    if ctx["earlier"] is not None:
        # the key's record expired, but the payout it created keeps the key for good
        raise IdempotencyKeyReused(
            f"this Idempotency-Key created payout {ctx['earlier']} and can never create another; use a new key"
        )
    beneficiary = request["beneficiary"]
    now = ctx["now"]  # now() of this transaction: what the columns' defaults would have stored
    values = {
        "id": f"po_{uuid.uuid4().hex}",
        "merchant_id": merchant_id,
        "idempotency_key": idempotency_key,
        "amount_minor": amount_minor,
        "currency": currency,
        "fee_minor": rule_fee(rail, amount_minor, ctx["fee_fixed_minor"], ctx["fee_bps"]),
        "method": method,
        "priority": priority,
        "rail": rail,
        "status": PayoutStatus.PENDING.value,
        "beneficiary_encrypted": _cipher(settings.codec_keys).encrypt_json(beneficiary),
        "beneficiary_masked": mask_beneficiary(beneficiary),
        "description": request.get("description"),
        "metadata": request.get("metadata") or {},
        "created_at": now,
        "updated_at": now,
    }
    # The row as INSERT ... RETURNING would give it back (every other column at its default),
    # so the payout, its `created` audit event, the merchant event (webhook outbox) and the
    # stored response are written by ONE statement (data-modifying CTEs, same transaction).
    row = {**NEW_PAYOUT_DEFAULTS, **values}
    body = payout_view(row, settings)
    params = {f"p_{c}": v for c, v in values.items()}
    params.update({f"ev_{c}": v for c, v in payout_event_values(row, EventType.PAYOUT_CREATED, settings).items()})
    params.update(actor=actor, audit_data={"idempotency_key": idempotency_key, "rail": rail}, body=body)
    try:
        await session.execute(_create_write(), params)
    except IntegrityError as exc:
        if "uq_payouts_merchant_idempotency_key" not in str(exc.orig):
            raise
        # a bulk payout's item took this reference as its key between the claim and this insert
        # (the claim saw no earlier payout): the same answer as when it is seen at the claim
        await session.rollback()
        raise IdempotencyKeyReused(
            "another payout of this merchant (a bulk payout item) took this Idempotency-Key meanwhile; use a new key"
        ) from None
    await session.commit()  # the workflow may only ever see a committed payout
    payouts_created_total.inc()

    # The workflow's first activity records workflow_started_at; if this start fails (or the
    # process dies right here), a replay of the request or the scheduled sweeper starts it.
    await start_payout_workflow(temporal, settings, row)
    return 201, body


async def sweep_unstarted_payouts(
    sessionmaker: async_sessionmaker[AsyncSession],
    temporal: Client,
    settings: Settings,
    older_than_seconds: float = 30,
    limit: int = 500,
) -> int:
    """Start the workflows of payouts created more than `older_than_seconds` ago whose workflow
    never recorded itself (its first activity sets workflow_started_at). Returns how many are now
    known to be started. Starting is idempotent (USE_EXISTING / REJECT_DUPLICATE), so a payout
    whose workflow merely has not run its first activity yet is left as it is."""
    async with sessionmaker() as session:
        rows = (
            await session.execute(
                select(payouts)
                .where(
                    payouts.c.workflow_started_at.is_(None),
                    payouts.c.created_at < func.now() - timedelta(seconds=older_than_seconds),
                )
                .order_by(payouts.c.created_at)
                .limit(limit)
            )
        ).mappings().all()
    healed = 0
    for row in rows:
        if await start_payout_workflow(temporal, settings, dict(row)):
            async with sessionmaker() as session:
                await _mark_started(session, row["id"])
                await session.commit()
            healed += 1
    if healed:
        log.info("sweeper started %d payout workflow(s)", healed)
    return healed


# --- reads --------------------------------------------------------------------------------------


async def get_payout(session: AsyncSession, payout_id: str, scope_merchant_id: str | None) -> dict:
    """The payout's row; another merchant's payout is simply not found (no existence leak)."""
    row = await get_payout_row(session, payout_id)
    if scope_merchant_id is not None and row["merchant_id"] != scope_merchant_id:
        raise NotFound(f"payout {payout_id} not found")
    return row


encode_cursor = time_id_cursor  # (created_at, payout id)
decode_cursor = decode_time_id_cursor


async def list_payouts(
    session: AsyncSession,
    *,
    merchant_id: str | None,
    status: str | None = None,
    method: str | None = None,
    rail: str | None = None,
    currency: str | None = None,
    created_from: datetime | None = None,
    created_to: datetime | None = None,
    amount_minor_min: int | None = None,
    amount_minor_max: int | None = None,
    limit: int = 50,
    cursor: str | None = None,
) -> tuple[list[dict], str | None]:
    """Newest first, keyset-paginated on (created_at, id)."""
    conditions = []
    for column, value in (
        (payouts.c.merchant_id, merchant_id),
        (payouts.c.status, status),
        (payouts.c.method, method),
        (payouts.c.rail, rail),
        (payouts.c.currency, currency),
    ):
        if value is not None:
            conditions.append(column == value)
    if created_from is not None:
        conditions.append(payouts.c.created_at >= created_from)
    if created_to is not None:
        conditions.append(payouts.c.created_at < created_to)
    if amount_minor_min is not None:
        conditions.append(payouts.c.amount_minor >= amount_minor_min)
    if amount_minor_max is not None:
        conditions.append(payouts.c.amount_minor <= amount_minor_max)
    if cursor:
        c_created, c_id = decode_cursor(cursor)
        conditions.append(tuple_(payouts.c.created_at, payouts.c.id) < tuple_(c_created, c_id))
    stmt = (
        select(payouts)
        .where(*conditions)
        .order_by(payouts.c.created_at.desc(), payouts.c.id.desc())
        .limit(limit + 1)
    )
    rows = [dict(r) for r in (await session.execute(stmt)).mappings().all()]
    next_cursor = None
    if len(rows) > limit:
        rows = rows[:limit]
        next_cursor = encode_cursor(rows[-1]["created_at"], rows[-1]["id"])
    return rows, next_cursor


async def list_events(session: AsyncSession, payout_id: str, scope_merchant_id: str | None) -> list[dict]:
    await get_payout(session, payout_id, scope_merchant_id)
    rows = (
        await session.execute(
            select(payout_events).where(payout_events.c.payout_id == payout_id).order_by(payout_events.c.sequence)
        )
    ).mappings().all()
    return [dict(r) for r in rows]


async def live_state(temporal: Client | None, payout_id: str) -> tuple[PayoutState | None, str | None]:
    """The workflow's `state` query, or (None, why) when the workflow cannot answer."""
    return await query_live_state(temporal, payout_workflow_id(payout_id), PayoutState,
                                  what="the payout workflow", timeout_seconds=QUERY_TIMEOUT_SECONDS)


async def workflow_status(temporal: Client | None, payout_id: str) -> str | None:
    """Temporal's execution status of the payout's workflow (RUNNING, TERMINATED, ...), or None
    when it has none or Temporal does not answer."""
    return await describe_status(temporal, payout_workflow_id(payout_id), timeout_seconds=QUERY_TIMEOUT_SECONDS)


async def payout_stats(session: AsyncSession, merchant_id: str | None) -> dict:
    scope = [payouts.c.merchant_id == merchant_id] if merchant_id else []
    grouped = (
        await session.execute(
            select(
                payouts.c.status,
                payouts.c.currency,
                func.count().label("count"),
                func.coalesce(func.sum(payouts.c.amount_minor), 0).label("amount_minor"),
                func.coalesce(func.sum(payouts.c.fee_minor), 0).label("fee_minor"),
            )
            .where(*scope)
            .group_by(payouts.c.status, payouts.c.currency)
            .order_by(payouts.c.status, payouts.c.currency)
        )
    ).all()
    avg = await session.scalar(
        select(func.avg(func.extract("epoch", payouts.c.settled_at - payouts.c.created_at))).where(
            payouts.c.settled_at.is_not(None), *scope
        )
    )
    by_status: dict[str, int] = {}
    for g in grouped:
        by_status[g.status] = by_status.get(g.status, 0) + g.count
    return {
        "merchant_id": merchant_id,
        "total_count": sum(by_status.values()),
        "by_status": by_status,
        "by_status_currency": [
            {
                "status": g.status,
                "currency": g.currency,
                "count": g.count,
                "amount": format_amount(int(g.amount_minor), g.currency),
                "amount_minor": int(g.amount_minor),
                "fee_minor": int(g.fee_minor),
            }
            for g in grouped
        ],
        "average_settlement_seconds": float(avg) if avg is not None else None,
    }


# --- ops updates --------------------------------------------------------------------------------


async def _update_workflow(temporal: Client, payout_id: str, name: str, arg: Any) -> OpsDecision:
    handle = temporal.get_workflow_handle(payout_workflow_id(payout_id))
    try:
        return await asyncio.wait_for(
            handle.execute_update(name, arg, result_type=OpsDecision), UPDATE_TIMEOUT_SECONDS
        )
    except WorkflowUpdateFailedError as exc:
        cause = exc.cause
        message = getattr(cause, "message", None) or str(cause or exc)
        raise InvalidState(message) from None
    except asyncio.TimeoutError:
        raise ServiceUnavailable(f"the payout workflow did not answer the {name} request in time") from None
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            raise InvalidState(f"cannot {name}: the payout's workflow is closed or does not exist") from None
        raise ServiceUnavailable(f"{name} could not reach the payout workflow: {exc.message}") from None


async def cancel_payout(
    session: AsyncSession, temporal: Client, payout_id: str, *, actor: str, reason: str, scope_merchant_id: str | None,
    grant: str | None = None,
) -> OpsDecision:
    """Cancel before submission. The workflow decides; the stored status can only lag behind it,
    so a stored status past the cancellable ones is refused without asking."""
    row = await get_payout(session, payout_id, scope_merchant_id)
    if row["status"] not in CANCELLABLE_STATUSES:
        raise InvalidState(f"cannot cancel: the payout is {row['status']}")
    await session.commit()  # no transaction held open while the workflow works
    return await _update_workflow(temporal, payout_id, "cancel", CancelRequest(actor=actor, reason=reason, grant=grant))


async def retry_payout(
    session: AsyncSession, temporal: Client, payout_id: str, *, actor: str, reason: str | None,
    scope_merchant_id: str | None, grant: str | None = None,
) -> OpsDecision:
    """Retry a payout parked in dlq. `grant`: payops's signature of the caller's verified identity
    (core/ops_actions/grants.py); without it the workflow audits the retry as unverified."""
    row = await get_payout(session, payout_id, scope_merchant_id)
    if row["status"] in TERMINAL_STATUSES:
        raise InvalidState(f"cannot retry: the payout is {row['status']} (only a dlq payout can be retried)")
    await session.commit()
    return await _update_workflow(temporal, payout_id, "retry", RetryRequest(actor=actor, reason=reason, grant=grant))


# --- bank notifications -------------------------------------------------------------------------

WEBHOOK_DEDUPE_TTL_SECONDS = 7 * 24 * 3600


def _dedupe_key(connector: str, event_id: str) -> str:
    return f"payops:bank-webhook:{connector}:{event_id}"


async def deliver_bank_notification(temporal: Client, redis, connector: str, notification) -> str:
    """Signal the payout's workflow once per event id. Returns "accepted" or "duplicate".

    The dedupe key is taken before signalling and given back if the signal cannot be delivered,
    so the bank's retry of an undeliverable notification is not mistaken for a duplicate.
    """
    key = _dedupe_key(connector, notification.event_id)
    if redis is not None and not await redis.set(key, "1", nx=True, ex=WEBHOOK_DEDUPE_TTL_SECONDS):
        return "duplicate"
    signal = BankNotificationSignal(
        event_id=notification.event_id,
        type=notification.type,
        status=notification.status,
        bank_payment_id=notification.payment_id,
        failure_code=notification.failure_code,
        return_code=notification.return_code,
    )
    try:
        await temporal.get_workflow_handle(payout_workflow_id(notification.reference)).signal("bank_notification", signal)
    except BaseException as exc:
        if redis is not None:
            await redis.delete(key)
        if isinstance(exc, RPCError) and exc.status == RPCStatusCode.NOT_FOUND:
            raise NotFound(f"no open payout workflow for reference {notification.reference}") from None
        if isinstance(exc, RPCError):
            raise ServiceUnavailable(f"could not deliver the notification: {exc.message}") from None
        raise
    return "accepted"

