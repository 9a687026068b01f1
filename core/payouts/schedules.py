"""Payout schedules: a merchant's (or the platform's) batch of payouts, made on a calendar or cron.

What a caller relies on:
- A schedule belongs to one merchant (whose balance pays). `owner` is `merchant` when the
  merchant's own admin created it (the merchant may then edit, pause and delete it) or `platform`
  when ops did (the merchant sees it, only ops change it).
- Each schedule is a Temporal Schedule `payout-schedule-<id>` (visible in the Temporal UI) whose
  action starts PayoutScheduleFireWorkflow; its activity calls `fire`, which makes the batch with
  core.payouts.bulk.create_bulk_payout, the same path as POST /bulk-payouts: approval threshold,
  per-item validation, each payout's own workflow.
- One fire time makes at most one batch: the batch's Idempotency-Key is
  `payout-schedule:<id>:<fire time UTC>` and each item's reference `<id>-<fire time>-<line>`, so
  a retried activity, a re-fired or backfilled time finds the batch it made before.
- The row is the truth; the Temporal Schedule follows it. A fire of a paused or deleted schedule
  makes nothing (`skipped`), so a pause that Temporal missed still holds. Worker start-up
  re-creates the Schedules of enabled rows (`ensure_payout_schedules`).
"""

from __future__ import annotations

import logging
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

from pydantic import TypeAdapter
from sqlalchemy import delete, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleSpec,
    ScheduleState,
    ScheduleUpdate,
    ScheduleUpdateInput,
)
from temporalio.service import RPCError, RPCStatusCode

from core.payouts import bulk
from core.payouts.models import PayoutScheduleFireInput, ScheduledBatchResult
from core.payouts.service import _cipher, mask_beneficiary
from core.payouts.schedule_spec import ScheduleSpecIn, describe, next_fire_times, to_cron
from core.platform.db import create_engine, create_sessionmaker
from core.platform.errors import Forbidden, IdempotencyKeyReused, MerchantFrozen, NotFound, Unprocessable
from core.platform.names import PAYOUT_SCHEDULE_FIRE_WORKFLOW, payout_schedule_temporal_id
from core.platform.settings import Settings
from core.platform.tables import bulk_payouts, merchants, payout_schedule_runs, payout_schedules

log = logging.getLogger("payops.payout_schedules")

MERCHANT, PLATFORM = "merchant", "platform"
MAX_TEMPLATE_ITEMS = 1000
RECENT_RUNS = 10
_SPEC: TypeAdapter = TypeAdapter(ScheduleSpecIn)


def fire_stamp(fire_time: datetime) -> str:
    return fire_time.astimezone(timezone.utc).strftime("%Y%m%dT%H%M%SZ")


def batch_idempotency_key(schedule_id: str, fire_time: datetime) -> str:
    return f"payout-schedule:{schedule_id}:{fire_stamp(fire_time)}"


def item_reference(schedule_id: str, fire_time: datetime, line: int) -> str:
    return f"{schedule_id}-{fire_stamp(fire_time)}-{line}"


# --- validation ----------------------------------------------------------------------------------


def validate_template(items: list[Any], merchant_id: str) -> tuple[list[dict], list[dict]]:
    """Each item as POST /bulk-payouts takes it, less `reference` (made per fire). A template with
    an invalid item is refused whole (422 naming each item), so a fire never meets a typo.
    Returns (the items as given, the items with their beneficiary masked for display)."""
    if not items:
        raise Unprocessable("a payout schedule needs at least one item",
                            extra={"errors": [{"loc": ["body", "items"], "msg": "empty", "type": "too_short"}]})
    if len(items) > MAX_TEMPLATE_ITEMS:
        raise Unprocessable(f"a payout schedule carries at most {MAX_TEMPLATE_ITEMS} items",
                            extra={"errors": [{"loc": ["body", "items"], "msg": "too many", "type": "too_long"}]})
    errors = []
    masked = []
    for line, raw in enumerate(items, start=1):
        if isinstance(raw, dict) and "reference" in raw:
            errors.append({"loc": ["body", "items", str(line - 1), "reference"], "type": "value_error",
                           "msg": "a schedule makes each item's reference per fire time; leave it out"})
            continue
        probe = {**raw, "reference": "template"} if isinstance(raw, dict) else raw
        # the bulk path's own per-item check, so a template passes exactly when a fire would
        clean, rejection = bulk._validate_item(line, probe, merchant_id)
        if clean is not None:
            masked.append({**{k: v for k, v in raw.items() if k != "beneficiary"},
                           "beneficiary": mask_beneficiary(clean["request"]["beneficiary"])})
        if rejection is not None:
            err = rejection["error"]
            loc = ["body", "items", str(line - 1), *(err["field"].split(".") if err["field"] else [])]
            errors.append({"loc": loc, "msg": err["reason"], "type": err["code"]})
    if errors:
        first = errors[0]
        raise Unprocessable(f"item {int(first['loc'][2]) + 1}: {first['msg']}", extra={"errors": errors})
    return [dict(i) for i in items], masked


def _template_columns(items: list[Any], merchant_id: str, settings: Settings) -> dict[str, Any]:
    """Beneficiaries are account numbers: kept encrypted like a payout's, shown masked."""
    full, masked = validate_template(items, merchant_id)
    return {"items": masked, "items_encrypted": _cipher(settings.codec_keys).encrypt_json({"items": full})}


# --- reads ---------------------------------------------------------------------------------------


def _view(row: dict, runs: list[dict] | None = None) -> dict:
    spec = row["spec"]
    return {
        "id": row["id"],
        "merchant_id": row["merchant_id"],
        "owner": row["owner"],
        "name": row["name"],
        "spec": spec,
        "description": _describe_stored(spec),
        "cron": row["cron"],
        "time_zone": row["time_zone"],
        "mode": row["mode"],
        "items": row["items"],
        "enabled": row["enabled"],
        "status": "active" if row["enabled"] else "paused",
        "temporal_schedule_id": payout_schedule_temporal_id(row["id"]),
        "created_by": row["created_by"],
        "created_at": row["created_at"].isoformat(),
        "updated_at": row["updated_at"].isoformat(),
        "recent_runs": runs or [],
    }


def _describe_stored(spec: dict) -> str:
    return describe(_SPEC.validate_python(spec))


async def _row(session: AsyncSession, schedule_id: str, scope_merchant_id: str | None) -> dict:
    row = (await session.execute(select(payout_schedules).where(payout_schedules.c.id == schedule_id))).mappings().first()
    if row is None or (scope_merchant_id is not None and row["merchant_id"] != scope_merchant_id):
        raise NotFound(f"payout schedule {schedule_id} not found")
    return dict(row)


async def _recent_runs(session: AsyncSession, schedule_id: str) -> list[dict]:
    r = payout_schedule_runs.c
    rows = await session.execute(
        select(r.fire_time, r.outcome, r.bulk_payout_id, r.detail, bulk_payouts.c.status)
        .join(bulk_payouts, bulk_payouts.c.id == r.bulk_payout_id, isouter=True)
        .where(r.schedule_id == schedule_id).order_by(r.fire_time.desc()).limit(RECENT_RUNS))
    return [{"fire_time": x.fire_time.isoformat(), "outcome": x.outcome, "bulk_payout_id": x.bulk_payout_id,
             "batch_status": x.status, "detail": x.detail} for x in rows]


async def get_schedule(session: AsyncSession, schedule_id: str, scope_merchant_id: str | None) -> dict:
    row = await _row(session, schedule_id, scope_merchant_id)
    view = _view(row, await _recent_runs(session, schedule_id))
    await session.commit()
    return view


async def list_schedules(session: AsyncSession, *, merchant_id: str | None) -> list[dict]:
    stmt = select(payout_schedules).order_by(payout_schedules.c.created_at.desc(), payout_schedules.c.id.desc())
    if merchant_id is not None:
        stmt = stmt.where(payout_schedules.c.merchant_id == merchant_id)
    rows = [dict(r) for r in (await session.execute(stmt.limit(500))).mappings().all()]
    await session.commit()
    return [_view(r) for r in rows]


def preview(cron: str, time_zone: str, count: int, after: datetime | None = None) -> list[dict]:
    after = after or datetime.now(timezone.utc)
    return [{"at": t.isoformat(), "at_utc": t.astimezone(timezone.utc).isoformat()}
            for t in next_fire_times(cron, time_zone, after, count)]


async def schedule_preview(session: AsyncSession, schedule_id: str, scope_merchant_id: str | None, count: int,
                           after: datetime | None = None) -> dict:
    row = await _row(session, schedule_id, scope_merchant_id)
    await session.commit()
    return {"cron": row["cron"], "time_zone": row["time_zone"], "enabled": row["enabled"],
            "next": preview(row["cron"], row["time_zone"], count, after)}


# --- writes --------------------------------------------------------------------------------------


def _may_edit(row: dict, *, is_merchant_user: bool) -> None:
    if is_merchant_user and row["owner"] == PLATFORM:
        raise Forbidden("this schedule is the platform's: only ops may change it")


async def create_schedule(session: AsyncSession, temporal: Client | None, settings: Settings, *, merchant_id: str,
                          owner: str, actor: str, name: str, spec, time_zone: str, mode: str, items: list[Any],
                          enabled: bool) -> dict:
    exists = await session.scalar(select(merchants.c.id).where(merchants.c.id == merchant_id))
    if exists is None:
        raise NotFound(f"merchant {merchant_id} not found")
    template = _template_columns(items, merchant_id, settings)
    schedule_id = f"ps_{uuid.uuid4().hex[:20]}"
    await session.execute(insert(payout_schedules).values(
        id=schedule_id, merchant_id=merchant_id, owner=owner, name=name, spec=spec.model_dump(mode="json"),
        cron=to_cron(spec), time_zone=time_zone, mode=mode, enabled=enabled, created_by=actor, **template))
    await session.commit()  # the row first: Temporal's action refers to it
    row = await _row(session, schedule_id, None)
    await session.commit()
    await sync_temporal_schedule(temporal, settings, row)
    return _view(row)


async def update_schedule(session: AsyncSession, temporal: Client | None, settings: Settings, schedule_id: str, *,
                          scope_merchant_id: str | None, is_merchant_user: bool, changes: dict[str, Any]) -> dict:
    row = await _row(session, schedule_id, scope_merchant_id)
    _may_edit(row, is_merchant_user=is_merchant_user)
    values: dict[str, Any] = {}
    if changes.get("spec") is not None:
        values["spec"] = changes["spec"].model_dump(mode="json")
        values["cron"] = to_cron(changes["spec"])
    for field in ("name", "time_zone", "mode", "enabled"):
        if changes.get(field) is not None:
            values[field] = changes[field]
    if changes.get("items") is not None:
        values.update(_template_columns(changes["items"], row["merchant_id"], settings))
    if values:
        await session.execute(update(payout_schedules).where(payout_schedules.c.id == schedule_id)
                              .values(**values, updated_at=datetime.now(timezone.utc)))
    await session.commit()
    row = await _row(session, schedule_id, None)
    runs = await _recent_runs(session, schedule_id)
    await session.commit()
    await sync_temporal_schedule(temporal, settings, row)
    return _view(row, runs)


async def delete_schedule(session: AsyncSession, temporal: Client | None, schedule_id: str, *,
                          scope_merchant_id: str | None, is_merchant_user: bool) -> None:
    row = await _row(session, schedule_id, scope_merchant_id)
    _may_edit(row, is_merchant_user=is_merchant_user)
    await session.execute(delete(payout_schedules).where(payout_schedules.c.id == schedule_id))
    await session.commit()  # a fire after this finds no row and makes nothing
    if temporal is not None:
        try:
            await temporal.get_schedule_handle(payout_schedule_temporal_id(schedule_id)).delete()
        except RPCError as exc:
            if exc.status != RPCStatusCode.NOT_FOUND:
                log.warning("could not delete Temporal schedule of %s (its fires now skip): %s", schedule_id, exc)


# --- Temporal ------------------------------------------------------------------------------------


def temporal_schedule(row: dict, settings: Settings) -> Schedule:
    return Schedule(
        action=ScheduleActionStartWorkflow(
            PAYOUT_SCHEDULE_FIRE_WORKFLOW, PayoutScheduleFireInput(schedule_id=row["id"]),
            id=payout_schedule_temporal_id(row["id"]), task_queue=settings.temporal_task_queue,
        ),
        spec=ScheduleSpec(cron_expressions=[row["cron"]], time_zone_name=row["time_zone"]),
        # each fire time is its own idempotent batch: runs may overlap; a fire missed while
        # Temporal or the workers were down is still made within a day
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.ALLOW_ALL, catchup_window=timedelta(days=1)),
        state=ScheduleState(paused=not row["enabled"],
                            note=f"{row['merchant_id']} · {row['name']} · {_describe_stored(row['spec'])}"),
    )


async def sync_temporal_schedule(temporal: Client | None, settings: Settings, row: dict) -> bool:
    """Create or update the row's Temporal Schedule and set its paused state from `enabled`.
    False when Temporal is unreachable: the row still rules (a paused row's fires skip) and the
    next worker start re-creates the Schedule."""
    if temporal is None:
        return False
    schedule_id = payout_schedule_temporal_id(row["id"])
    desired = temporal_schedule(row, settings)
    try:
        try:
            await temporal.create_schedule(schedule_id, desired)
            return True
        except ScheduleAlreadyRunningError:
            pass

        def change(current: ScheduleUpdateInput) -> ScheduleUpdate:
            return ScheduleUpdate(schedule=desired)

        handle = temporal.get_schedule_handle(schedule_id)
        await handle.update(change)
        paused = (await handle.describe()).schedule.state.paused
        if row["enabled"] and paused:
            await handle.unpause(note="resumed via payops")
        elif not row["enabled"] and not paused:
            await handle.pause(note="paused via payops")
        return True
    except RPCError as exc:
        log.warning("could not sync Temporal schedule %s (the worker's start-up heals): %s", schedule_id, exc)
        return False


async def ensure_payout_schedules(client: Client, settings: Settings) -> list[str]:
    """Re-create (or update) the Temporal Schedule of every payout schedule row, at worker start."""
    engine = create_engine(settings.database_url, pool_size=1, max_overflow=0)
    try:
        async with create_sessionmaker(engine)() as session:
            rows = [dict(r) for r in (await session.execute(select(payout_schedules))).mappings().all()]
    finally:
        await engine.dispose()
    done = []
    for row in rows:
        if row["enabled"] or await _exists(client, row["id"]):
            if await sync_temporal_schedule(client, settings, row):
                done.append(payout_schedule_temporal_id(row["id"]))
    return done


async def _exists(client: Client, schedule_id: str) -> bool:
    try:
        await client.get_schedule_handle(payout_schedule_temporal_id(schedule_id)).describe()
        return True
    except RPCError:
        return False


# --- a fire --------------------------------------------------------------------------------------


async def _record_run(session: AsyncSession, schedule_id: str, fire_time: datetime, outcome: str,
                      bulk_payout_id: str | None, detail: str | None) -> None:
    stmt = pg_insert(payout_schedule_runs).values(
        schedule_id=schedule_id, fire_time=fire_time, outcome=outcome, bulk_payout_id=bulk_payout_id, detail=detail)
    await session.execute(stmt.on_conflict_do_update(
        index_elements=["schedule_id", "fire_time"],
        set_={"outcome": outcome, "bulk_payout_id": bulk_payout_id, "detail": detail}))


async def fire(sessionmaker: async_sessionmaker[AsyncSession], temporal: Client | None, settings: Settings,
               schedule_id: str, fire_time: datetime) -> ScheduledBatchResult:
    """Make the batch of one fire time through the bulk-payout path; idempotent on the fire time.
    A domain refusal (all_or_nothing with an invalid item, a frozen merchant) raises it (PayopsError)
    after recording it; the caller decides whether it is final."""
    async with sessionmaker() as session:
        row = (await session.execute(
            select(payout_schedules).where(payout_schedules.c.id == schedule_id))).mappings().first()
        if row is None:
            return ScheduledBatchResult(outcome="skipped", detail="the schedule was deleted")
        if not row["enabled"]:
            await _record_run(session, schedule_id, fire_time, "skipped", None, "the schedule is paused")
            await session.commit()
            return ScheduledBatchResult(outcome="skipped", detail="the schedule is paused")
        row = dict(row)
    key = batch_idempotency_key(schedule_id, fire_time)
    template = _cipher(settings.codec_keys).decrypt_json(row["items_encrypted"])["items"]
    items = [{**item, "reference": item_reference(schedule_id, fire_time, line)}
             for line, item in enumerate(template, start=1)]
    async with sessionmaker() as session:
        try:
            _, batch = await bulk.create_bulk_payout(
                session, temporal, settings, None, merchant_id=row["merchant_id"], actor=f"schedule:{schedule_id}",
                idempotency_key=key, mode=row["mode"], items=items, source="schedule")
            batch_id = batch["id"]
        except IdempotencyKeyReused:
            await session.rollback()  # the template changed since this time's batch was made: that batch stands
            batch_id = await session.scalar(select(bulk_payouts.c.id).where(
                bulk_payouts.c.merchant_id == row["merchant_id"], bulk_payouts.c.idempotency_key == key))
            if batch_id is None:
                raise
        except (Unprocessable, MerchantFrozen, NotFound) as exc:
            await session.rollback()
            await _record_run(session, schedule_id, fire_time, "refused", None, exc.detail)
            await session.commit()
            raise
        await _record_run(session, schedule_id, fire_time, "created", batch_id, None)
        await session.commit()
    return ScheduledBatchResult(outcome="created", bulk_payout_id=batch_id)
