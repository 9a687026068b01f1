"""Bulk payouts: up to PAYOPS_BULK_PAYOUT_MAX_ITEMS payouts taken in one request (JSON or CSV).

What a caller relies on:
- The batch is idempotent on (merchant, Idempotency-Key) through core.platform.idempotency, like a single
  payout: a retried upload returns the same batch and the same per-item report (rebuilt from the
  stored items), never a second batch.
- Each item carries a `reference`, which is the payout's idempotency key: it shares the namespace
  of POST /payouts' Idempotency-Key (unique per merchant, enforced by the payouts table's unique
  constraint). An item whose reference already made a payout, or is reserved by a batch waiting
  for approval, or repeats an earlier item of the same batch, is rejected (`duplicate_reference`,
  with the existing payout's id when there is one): never a second payout.
- Every item is validated (the single-payout schema) before anything is written; the answer is a
  per-item report. `all_or_nothing`: any rejected item -> nothing is stored, 422 with the report.
  `partial`: the accepted items go ahead.
- One transaction stores the batch, its items and (unless approval is needed) the payouts, their
  `created` audit events and merchant events. The payouts are ordinary payouts (status `pending`);
  their own PayoutWorkflow holds the funds, so a merchant that runs out half-way gets the rest
  `rejected` / `insufficient_funds` while the others proceed.
- Above PAYOPS_BULK_PAYOUT_APPROVAL_THRESHOLD_MINOR (any one currency's total) the batch waits for
  an APPROVE_BULK_PAYOUT ops action (multi-signature); its execution creates the payouts.
- Workflows are started by BulkPayoutIntakeWorkflow (workflows/bulk_payouts.py): chunks of
  payouts per activity, each start idempotent (workflow id from the payout id), continue-as-new.
"""

from __future__ import annotations

import asyncio
import base64
import csv
import io
import json
import logging
import re
import uuid
from typing import Any

from pydantic import ValidationError
from sqlalchemy import String, and_, any_, func, insert, literal, select, text, tuple_, update
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import Client
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError

from core.platform import idempotency
from core.platform.errors import IdempotencyKeyReused, MerchantFrozen, NotFound, Unprocessable
from core.merchants.service import frozen_clause
from core.platform.metrics import payouts_created_total
from core.platform.money import format_amount, parse_amount
from core.platform.names import bulk_payout_intake_workflow_id
from core.ops_actions import service as ops_action_service
from core.payouts.models import TERMINAL_STATUSES, BulkPayoutIntakeInput, PayoutStatus
from core.payouts.request import PayoutCreate  # the single payout's schema, field for field
from core.payouts.service import _cipher, decode_cursor, encode_cursor, mask_beneficiary, start_payout_workflow
from core.payouts.view import PayoutOut, payout_view
from core.webhooks.events import new_event_id
from core.webhooks.models import EventType
from core.rails.store import rule_fee
from core.payouts.routing import choose_rail
from core.platform.settings import Settings
from core.platform.tables import bulk_payout_items, bulk_payouts, events, merchants, ops_actions, payout_events, payouts, rail_rules

log = logging.getLogger("payops.bulk_payouts")

CREATE_SCOPE = "bulk_payouts.create"
INTAKE_WORKFLOW = "BulkPayoutIntakeWorkflow"
MODES = ("all_or_nothing", "partial")
ACCEPTED, REJECTED = "accepted", "rejected"
AWAITING_APPROVAL, RELEASED, FAILED = "awaiting_approval", "released", "failed"
OPEN_ACTION_STATUSES = ("pending_approval", "approved", "executing")
MAX_REFERENCE = 255
TERMINAL = frozenset(s.value for s in TERMINAL_STATUSES)

# CSV columns (one row per payout); beneficiary_* fill the beneficiary, metadata.<key> its metadata
CSV_COLUMNS = (
    "reference", "amount", "currency", "method", "priority", "description",
    "beneficiary_name", "beneficiary_iban", "beneficiary_bic", "beneficiary_routing_number",
    "beneficiary_account_number", "beneficiary_account_type", "beneficiary_sort_code",
    "beneficiary_phone", "beneficiary_operator",
)


def _any(values: list[str]):
    """`= ANY(:array)`: one bind parameter however many values (a batch has up to 10,000)."""
    return any_(literal(list(values), ARRAY(String)))


# PostgreSQL types of the columns written by _insert_rows; "bytea" values travel as base64 text
_ITEM_COLUMNS = {
    "bulk_payout_id": "text", "line": "int", "merchant_id": "text", "reference": "text", "status": "text",
    "error_code": "text", "error_field": "text", "error_reason": "text", "existing_payout_id": "text",
    "payout_id": "text", "amount_minor": "bigint", "currency": "text", "fee_minor": "bigint", "method": "text",
    "priority": "text", "rail": "text", "beneficiary_encrypted": "bytea", "beneficiary_masked": "jsonb",
    "description": "text", "metadata": "jsonb",
}
_EVENT_COLUMNS = {"id": "text", "merchant_id": "text", "type": "text", "payout_id": "text", "payout_version": "int",
                  "data": "jsonb"}
# the payouts' INSERT of a bulk payout is counted in the dashboard rollups by one grouped statement
# (dashboard_rollup_new_payouts) instead of a row trigger per payout: migration 0021_w19_bulk_rollups
_ROLLUPS_SETTING = "payops.payout_rollups"


async def _insert_rows(session: AsyncSession, table, columns: dict[str, str], rows: list[dict]) -> None:
    """INSERT … SELECT FROM jsonb_to_recordset(:rows): thousands of rows in one statement with one
    bind parameter. (An executemany runs the INSERT, and the table's statement triggers, once per row.)"""
    if not rows:
        return
    record = ", ".join(f"{c} {'text' if t == 'bytea' else t}" for c, t in columns.items())
    values = ", ".join(f"decode(x.{c}, 'base64')" if t == "bytea" else f"x.{c}" for c, t in columns.items())
    for row in rows:
        for c, t in columns.items():
            if t == "bytea" and row[c] is not None:
                row[c] = base64.b64encode(row[c]).decode("ascii")
    await session.execute(
        text(f"INSERT INTO {table.name} ({', '.join(columns)}) SELECT {values} "
             f"FROM jsonb_to_recordset(CAST(CAST(:rows AS text) AS jsonb)) AS x({record})"),
        {"rows": json.dumps(rows, separators=(",", ":"))},
    )


# --- validation ----------------------------------------------------------------------------------


def _rejection(line: int, reference: Any, code: str, field: str | None, reason: str, **extra) -> dict:
    return {"line": line, "reference": reference if isinstance(reference, str) else None, "status": REJECTED,
            "error": {"code": code, "field": field, "reason": reason, **extra}}


def _validate_item(line: int, raw: Any, merchant_id: str) -> tuple[dict | None, dict | None]:
    """(clean item, None) or (None, rejection). The clean item has what the payout row needs."""
    if not isinstance(raw, dict):
        return None, _rejection(line, None, "invalid", None, "an item must be a JSON object")
    raw = dict(raw)
    reference = raw.pop("reference", None)
    if not isinstance(reference, str) or not reference.strip():
        return None, _rejection(line, reference, "invalid", "reference", "a non-empty string reference is required")
    if len(reference) > MAX_REFERENCE:
        return None, _rejection(line, reference, "invalid", "reference", f"at most {MAX_REFERENCE} characters")
    if raw.get("merchant_id") not in (None, merchant_id):
        return None, _rejection(line, reference, "invalid", "merchant_id",
                                "an item may not name another merchant than the batch's")
    try:
        item = PayoutCreate.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"]) or None
        return None, _rejection(line, reference, "invalid", field, first["msg"])
    body = item.model_dump(mode="json", exclude={"merchant_id"})
    try:
        rail = choose_rail(body["method"], body["currency"], body["priority"])
    except Unprocessable as exc:
        return None, _rejection(line, reference, "invalid", "currency", str(exc.detail or exc))
    return {"line": line, "reference": reference, "request": body, "rail": rail,
            "amount_minor": parse_amount(body["amount"], body["currency"])}, None


def items_from_csv(text: str) -> list[dict]:
    """One item per data row. Unknown columns are refused (a typo must not drop a value).

    A spreadsheet's export reads as it is: CRLF line ends and quoted cells (commas, line breaks,
    doubled quotes) are CSV; `;` separates the cells when the header row has `;` and no comma
    (the export of a spreadsheet set to a locale whose decimal mark is a comma)."""
    header = re.split(r"\r\n|\r|\n", text, maxsplit=1)[0]
    delimiter = ";" if ";" in header and "," not in header else ","
    # newline="": the csv module sees every line end (a classic Mac export ends lines with CR only)
    reader = csv.DictReader(io.StringIO(text, newline=""), delimiter=delimiter)
    try:
        return _csv_rows(reader)
    except csv.Error as exc:
        raise Unprocessable(
            f"the CSV cannot be read after line {reader.line_num}: {exc}",
            extra={"errors": [{"loc": ["body"], "msg": str(exc), "type": "value_error"}]},
        ) from None


def _csv_rows(reader: csv.DictReader) -> list[dict]:
    if not reader.fieldnames:
        raise Unprocessable("the CSV has no header row",
                            extra={"errors": [{"loc": ["body"], "msg": "no header", "type": "value_error"}]})
    unknown = [c for c in reader.fieldnames if c not in CSV_COLUMNS and not c.startswith("metadata.")]
    if unknown:
        raise Unprocessable(
            f"unknown CSV column(s): {', '.join(unknown)}; the columns are {', '.join(CSV_COLUMNS)} "
            "and metadata.<key>",
            extra={"errors": [{"loc": ["body", c], "msg": "unknown column", "type": "value_error"} for c in unknown]},
        )
    items = []
    for row in reader:
        if row.get(None):  # DictReader's restkey: cells beyond the header's columns
            # an unquoted "1,500.00" splits an amount into two cells and shifts the rest of the row:
            # refuse the file rather than pay 1 and read the other cells into the wrong columns
            raise Unprocessable(
                f"line {reader.line_num} has {len(reader.fieldnames) + len(row[None])} cells but the header has "
                f"{len(reader.fieldnames)}; quote any cell that contains the separator (\"1,500.00\")",
                extra={"errors": [{"loc": ["body", reader.line_num], "msg": "more cells than the header",
                                   "type": "value_error"}]},
            )
        item: dict[str, Any] = {}
        beneficiary: dict[str, Any] = {}
        metadata: dict[str, str] = {}
        for column, value in row.items():
            if column is None or value is None or value.strip() == "":
                continue
            value = value.strip()
            if column.startswith("beneficiary_"):
                beneficiary[column.removeprefix("beneficiary_")] = value
            elif column.startswith("metadata."):
                metadata[column.removeprefix("metadata.")] = value
            else:
                item[column] = value
        if beneficiary:
            item["beneficiary"] = beneficiary
        if metadata:
            item["metadata"] = metadata
        items.append(item)
    return items


# --- creation ------------------------------------------------------------------------------------


async def _merchant_context(session: AsyncSession, merchant_id: str) -> dict[str, tuple[int | None, int | None]]:
    ctx = (await session.execute(
        select(frozen_clause(merchants.c.id).label("frozen")).where(merchants.c.id == merchant_id)
    )).first()
    if ctx is None:
        raise NotFound(f"merchant {merchant_id} not found")
    if ctx.frozen:
        raise MerchantFrozen(f"merchant {merchant_id} is frozen: it cannot create payouts")
    rules = (await session.execute(select(rail_rules.c.rail, rail_rules.c.fee_fixed_minor, rail_rules.c.fee_bps))).all()
    return {r.rail: (r.fee_fixed_minor, r.fee_bps) for r in rules}


async def _taken_references(session: AsyncSession, merchant_id: str, refs: list[str]) -> dict[str, str | None]:
    """reference -> the payout it made (None: reserved by a batch still waiting for approval)."""
    if not refs:
        return {}
    taken: dict[str, str | None] = {}
    rows = await session.execute(
        select(payouts.c.idempotency_key, payouts.c.id).where(
            payouts.c.merchant_id == merchant_id, payouts.c.idempotency_key == _any(refs))
    )
    for ref, pid in rows:
        taken[ref] = pid
    waiting = await session.scalars(
        select(bulk_payout_items.c.reference)
        .join(bulk_payouts, bulk_payouts.c.id == bulk_payout_items.c.bulk_payout_id)
        .where(
            bulk_payout_items.c.merchant_id == merchant_id,
            bulk_payout_items.c.reference == _any(refs),
            bulk_payout_items.c.status == ACCEPTED,
            bulk_payouts.c.status == AWAITING_APPROVAL,
            _approval_open(bulk_payouts.c.id),
        )
    )
    for ref in waiting:
        taken.setdefault(ref, None)
    return taken


def _approval_action():
    return (ops_actions.c.target["kind"].astext == "bulk_payout", ops_actions.c.target["id"].astext)


def _approval_open(batch_id_column):
    kind_is_bulk, target_id = _approval_action()
    return (
        select(literal(1)).where(kind_is_bulk, target_id == batch_id_column,
                                 ops_actions.c.status.in_(OPEN_ACTION_STATUSES)).exists()
    )


def _report_line(item: dict) -> dict:
    return {"line": item["line"], "reference": item["reference"], "status": ACCEPTED, "payout_id": item["payout_id"],
            "error": None}


def _totals(accepted: list[dict]) -> dict[str, int]:
    totals: dict[str, int] = {}
    for item in accepted:
        cur = item["request"]["currency"]
        totals[cur] = totals.get(cur, 0) + item["amount_minor"]
    return totals


async def create_bulk_payout(
    session: AsyncSession,
    temporal: Client | None,
    settings: Settings,
    redis=None,
    *,
    merchant_id: str,
    actor: str,
    idempotency_key: str,
    mode: str,
    items: list[Any],
    source: str = "json",
) -> tuple[int, dict]:
    """Take a batch in. Returns (http status, body: the batch with its per-item report)."""
    if mode not in MODES:
        raise Unprocessable(f"mode must be one of {', '.join(MODES)}",
                            extra={"errors": [{"loc": ["body", "mode"], "msg": "unknown mode", "type": "enum"}]})
    if not items:
        raise Unprocessable("a bulk payout needs at least one item",
                            extra={"errors": [{"loc": ["body", "items"], "msg": "empty", "type": "too_short"}]})
    if len(items) > settings.bulk_payout_max_items:
        raise Unprocessable(
            f"a bulk payout carries at most {settings.bulk_payout_max_items} items; this one has {len(items)}",
            extra={"errors": [{"loc": ["body", "items"], "msg": "too many items", "type": "too_long"}]},
        )
    claim = await idempotency.claim_key(
        session, merchant_id=merchant_id, scope=CREATE_SCOPE, key=idempotency_key,
        request_fingerprint=idempotency.fingerprint({"merchant_id": merchant_id, "mode": mode, "items": items}),
        ttl_hours=settings.idempotency_ttl_hours,
    )
    if not claim.is_new:
        await session.commit()
        batch = await get_bulk_payout(session, claim.resource_id, merchant_id, with_items=True)
        if batch["status"] == RELEASED and batch["intake"]["completed_at"] is None:
            await start_intake(temporal, settings, claim.resource_id)  # heal a start lost at creation
        return 200, batch
    earlier = await session.scalar(select(bulk_payouts.c.id).where(
        bulk_payouts.c.merchant_id == merchant_id, bulk_payouts.c.idempotency_key == idempotency_key))
    if earlier is not None:
        raise IdempotencyKeyReused(
            f"this Idempotency-Key created bulk payout {earlier} and can never create another; use a new key")

    fee_rules = await _merchant_context(session, merchant_id)

    # 1. validate every item (nothing is written yet)
    report: list[dict] = []
    accepted: list[dict] = []
    seen: dict[str, int] = {}
    for line, raw in enumerate(items, start=1):
        item, rejection = _validate_item(line, raw, merchant_id)
        if rejection is None and item["reference"] in seen:
            rejection = _rejection(line, item["reference"], "duplicate_reference", "reference",
                                   f"the reference repeats line {seen[item['reference']]} of this batch")
        if rejection is not None:
            report.append(rejection)
            continue
        seen[item["reference"]] = line
        accepted.append(item)
        report.append(item)  # replaced by its report line below
    taken = await _taken_references(session, merchant_id, [i["reference"] for i in accepted])
    still: list[dict] = []
    for item in accepted:
        if item["reference"] in taken:
            existing = taken[item["reference"]]
            why = (f"the reference already made payout {existing}" if existing
                   else "the reference is reserved by a bulk payout waiting for approval")
            report[item["line"] - 1] = _rejection(item["line"], item["reference"], "duplicate_reference",
                                                  "reference", why, existing_payout_id=existing)
        else:
            still.append(item)
    accepted = still
    rejected_count = len(items) - len(accepted)
    if mode == "all_or_nothing" and rejected_count:
        await session.rollback()  # gives the key back: a corrected retry may use it
        raise _all_or_nothing_refusal(report, len(items), rejected_count)

    # 2. store the batch and its items
    batch_id = f"bp_{uuid.uuid4().hex}"
    totals = _totals(accepted)
    threshold = settings.bulk_payout_approval_threshold_minor
    approval_required = bool(threshold) and any(total > threshold for total in totals.values())
    cipher = _cipher(settings.codec_keys)
    await session.execute(bulk_payouts.insert().values(
        id=batch_id, merchant_id=merchant_id, idempotency_key=idempotency_key, mode=mode, source=source,
        status=AWAITING_APPROVAL, approval_required=approval_required, item_count=len(items),
        accepted_count=len(accepted), rejected_count=rejected_count, totals=totals, created_by=actor,
    ))
    rows = []
    for entry in report:
        if entry.get("status") == REJECTED:
            err = entry["error"]
            rows.append({"bulk_payout_id": batch_id, "line": entry["line"], "merchant_id": merchant_id,
                         "reference": entry["reference"], "status": REJECTED, "error_code": err["code"],
                         "error_field": err["field"], "error_reason": err["reason"],
                         "existing_payout_id": err.get("existing_payout_id"), "payout_id": None,
                         "amount_minor": None, "currency": None, "fee_minor": None, "method": None,
                         "priority": None, "rail": None, "beneficiary_encrypted": None, "beneficiary_masked": None,
                         "description": None, "metadata": None})
            continue
        req = entry["request"]
        fixed, bps = fee_rules.get(entry["rail"], (None, None))
        entry["payout_id"] = f"po_{uuid.uuid4().hex}"
        rows.append({
            "bulk_payout_id": batch_id, "line": entry["line"], "merchant_id": merchant_id,
            "reference": entry["reference"], "status": ACCEPTED, "error_code": None, "error_field": None,
            "error_reason": None, "existing_payout_id": None, "payout_id": entry["payout_id"],
            "amount_minor": entry["amount_minor"], "currency": req["currency"],
            "fee_minor": rule_fee(entry["rail"], entry["amount_minor"], fixed, bps), "method": req["method"],
            "priority": req["priority"], "rail": entry["rail"],
            "beneficiary_encrypted": cipher.encrypt_json(req["beneficiary"]),
            "beneficiary_masked": mask_beneficiary(req["beneficiary"]),
            "description": req.get("description"), "metadata": req.get("metadata") or {},
        })
    await _insert_rows(session, bulk_payout_items, _ITEM_COLUMNS, rows)
    await session.execute(idempotency.response_update(
        merchant_id=merchant_id, scope=CREATE_SCOPE, key=idempotency_key, resource_id=batch_id, status=201,
        body={"bulk_payout_id": batch_id},
    ))

    # 3. release now, or ask for approval (the action's row commits with the batch)
    if not approval_required:
        if accepted:
            outcome = await release(session, settings, batch_id, actor=actor)
            if outcome.get("failed"):
                await session.rollback()
                raise Unprocessable(outcome["failed"])
        else:
            await session.execute(update(bulk_payouts).where(bulk_payouts.c.id == batch_id).values(
                status=RELEASED, released_at=func.now(), intake_completed_at=func.now(), updated_at=func.now()))
        await session.commit()
        if accepted:
            payouts_created_total.inc(outcome["created"])
            await start_intake(temporal, settings, batch_id)
    else:
        summary = ", ".join(f"{format_amount(v, c)} {c}" for c, v in sorted(totals.items()))
        await ops_action_service.create_action(  # commits the batch, its items and the action at once
            session, temporal, settings, redis, actor=actor, action_type="APPROVE_BULK_PAYOUT",
            params={"bulk_payout_id": batch_id, "merchant_id": merchant_id},
            reason=f"bulk payout {batch_id}: {len(accepted)} payouts, {summary}",
        )
    return 201, await get_bulk_payout(session, batch_id, merchant_id, with_items=True)


def _all_or_nothing_refusal(report: list[dict], item_count: int, rejected_count: int) -> Unprocessable:
    lines = [r if r.get("status") == REJECTED else
             {"line": r["line"], "reference": r["reference"], "status": "valid", "payout_id": None, "error": None}
             for r in report]
    return Unprocessable(
        f"{rejected_count} of {item_count} items are invalid; mode all_or_nothing created nothing",
        extra={"item_count": item_count, "rejected_count": rejected_count, "items": lines},
    )


def released_items(batch_id: str):
    """The items an approval releases into payouts: the batch's accepted ones."""
    return and_(bulk_payout_items.c.bulk_payout_id == batch_id, bulk_payout_items.c.status == ACCEPTED)


async def release_preview(session: AsyncSession, batch_id: str) -> dict | None:
    """What releasing the batch would create now (its plan): status, count and totals per currency
    of the items `release` inserts. None when there is no such batch."""
    batch = (await session.execute(select(bulk_payouts).where(bulk_payouts.c.id == batch_id))).mappings().first()
    if batch is None:
        return None
    i = bulk_payout_items.c
    rows = (await session.execute(
        select(i.currency, func.count().label("count"), func.sum(i.amount_minor).label("amount_minor"),
               func.sum(i.fee_minor).label("fee_minor"))
        .where(released_items(batch_id)).group_by(i.currency).order_by(i.currency))).all()
    return {"status": batch["status"], "merchant_id": batch["merchant_id"], "mode": batch["mode"],
            "items": sum(r.count for r in rows),
            "totals": [{"currency": r.currency, "count": r.count, "amount_minor": int(r.amount_minor),
                        "fee_minor": int(r.fee_minor or 0)} for r in rows]}


async def release(session: AsyncSession, settings: Settings, batch_id: str, *, actor: str) -> dict:
    """Create the batch's payouts from its accepted items, in the caller's transaction.

    Idempotent: a released batch is left alone. A reference taken meanwhile (a single payout with
    that Idempotency-Key won the race) is not inserted (ON CONFLICT DO NOTHING on the payouts'
    unique key) and its item is rejected as a duplicate; in all_or_nothing the batch fails instead
    and nothing is created. Returns {"created": n} or {"failed": why}."""
    batch = (await session.execute(
        select(bulk_payouts).where(bulk_payouts.c.id == batch_id).with_for_update())).mappings().one()
    if batch["status"] != AWAITING_APPROVAL:
        return {"created": 0, "already": batch["status"]}
    i = bulk_payout_items.c
    source = select(
        i.payout_id, i.merchant_id, i.reference, i.amount_minor, i.currency, i.fee_minor, i.method, i.priority,
        i.rail, literal(PayoutStatus.PENDING.value), i.beneficiary_encrypted, i.beneficiary_masked, i.description,
        i.metadata,
    ).where(released_items(batch_id)).order_by(i.line)
    # a savepoint: an all_or_nothing batch that cannot be released leaves no payout behind, even when
    # the caller commits (release_approved commits the batch's `failed` status)
    savepoint = await session.begin_nested()
    await session.execute(select(func.set_config(_ROLLUPS_SETTING, "by_statement", True)))
    created = (await session.execute(
        pg_insert(payouts).from_select(
            ["id", "merchant_id", "idempotency_key", "amount_minor", "currency", "fee_minor", "method", "priority",
             "rail", "status", "beneficiary_encrypted", "beneficiary_masked", "description", "metadata"],
            source,
        ).on_conflict_do_nothing(constraint="uq_payouts_merchant_idempotency_key").returning(*payouts.c)
    )).mappings().all()
    await session.execute(select(func.set_config(_ROLLUPS_SETTING, "by_row", True)))
    created_ids = {r["id"] for r in created}
    if len(created_ids) < batch["accepted_count"]:
        lost = (await session.execute(
            select(i.line, i.payout_id, i.reference).where(i.bulk_payout_id == batch_id, i.status == ACCEPTED)
        )).all()
        lost = [r for r in lost if r.payout_id not in created_ids]
        if batch["mode"] == "all_or_nothing":
            await savepoint.rollback()
            return {"failed": f"{len(lost)} reference(s) were used by other payouts meanwhile "
                              f"({', '.join(r.reference for r in lost[:5])}); all_or_nothing created nothing"}
        for r in lost:
            existing = await session.scalar(select(payouts.c.id).where(
                payouts.c.merchant_id == batch["merchant_id"], payouts.c.idempotency_key == r.reference))
            await session.execute(update(bulk_payout_items).where(
                i.bulk_payout_id == batch_id, i.line == r.line).values(
                status=REJECTED, error_code="duplicate_reference", error_field="reference",
                error_reason=f"the reference already made payout {existing}", existing_payout_id=existing,
                payout_id=None))
    # audit events (each payout's first), set-based; merchant events (webhook outbox) row by row
    await session.execute(insert(payout_events).from_select(
        ["payout_id", "sequence", "actor", "from_status", "to_status", "reason", "data"],
        select(i.payout_id, literal(1), literal(actor), literal(None), literal(PayoutStatus.PENDING.value),
               literal(f"created through bulk payout {batch_id}"),
               func.jsonb_build_object("idempotency_key", i.reference, "rail", i.rail, "bulk_payout_id", batch_id))
        .join(payouts, payouts.c.id == i.payout_id)
        .where(i.bulk_payout_id == batch_id, i.status == ACCEPTED),
    ))
    if created:
        outbox = [{
            "id": new_event_id(), "merchant_id": r["merchant_id"], "type": EventType.PAYOUT_CREATED.value,
            "payout_id": r["id"], "payout_version": r["version"],
            "data": PayoutOut.model_validate(payout_view(dict(r), settings)).model_dump(mode="json"),
        } for r in created]
        await _insert_rows(session, events, _EVENT_COLUMNS, outbox)
    lost_count = batch["accepted_count"] - len(created_ids)
    await session.execute(update(bulk_payouts).where(bulk_payouts.c.id == batch_id).values(
        status=RELEASED, released_at=func.now(), updated_at=func.now(),
        accepted_count=len(created_ids), rejected_count=bulk_payouts.c.rejected_count + lost_count,
        intake_completed_at=None if created_ids else func.now(),
    ))
    if created_ids:  # last: the rollup rows it locks are held only until the caller's commit
        await session.execute(select(func.dashboard_rollup_new_payouts(literal(list(created_ids), ARRAY(String)))))
    await savepoint.commit()
    return {"created": len(created_ids), "duplicates": lost_count}


async def fail_batch(session: AsyncSession, batch_id: str, reason: str) -> None:
    await session.execute(update(bulk_payouts).where(
        bulk_payouts.c.id == batch_id, bulk_payouts.c.status == AWAITING_APPROVAL,
    ).values(status=FAILED, failure_reason=reason, updated_at=func.now()))


async def release_approved(sessionmaker: async_sessionmaker[AsyncSession], client: Client, settings: Settings,
                           batch_id: str, *, actor: str) -> dict:
    """APPROVE_BULK_PAYOUT's effect: create the payouts, then start the intake. Idempotent."""
    async with sessionmaker() as session:
        outcome = await release(session, settings, batch_id, actor=actor)
        if outcome.get("failed"):
            await fail_batch(session, batch_id, outcome["failed"])
        await session.commit()
    if not outcome.get("failed"):
        payouts_created_total.inc(outcome.get("created", 0))
        await start_intake(client, settings, batch_id)
    return {"bulk_payout_id": batch_id, **outcome}


# --- intake: starting the payouts' workflows -----------------------------------------------------


async def start_intake(temporal: Client | None, settings: Settings, batch_id: str) -> bool:
    """Start (or find running) the batch's intake workflow; False when Temporal is unreachable
    (a replay of the request starts it, and the payout sweeper starts unstarted payouts anyway)."""
    if temporal is None:
        return False
    try:
        await temporal.start_workflow(
            INTAKE_WORKFLOW,
            BulkPayoutIntakeInput(bulk_payout_id=batch_id, chunk_size=settings.bulk_payout_intake_chunk_size),
            id=bulk_payout_intake_workflow_id(batch_id),
            task_queue=settings.temporal_task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE_FAILED_ONLY,
        )
    except WorkflowAlreadyStartedError:
        return True  # it completed: every payout of the batch was started
    except Exception as exc:  # noqa: BLE001
        log.warning("could not start the intake of bulk payout %s (a replay or the sweeper heals): %s", batch_id, exc)
        return False
    return True


async def start_chunk(
    sessionmaker: async_sessionmaker[AsyncSession], client: Client, settings: Settings, batch_id: str,
    chunk_size: int, heartbeat=lambda *a: None,
) -> tuple[int, int]:
    """Start the workflows of up to `chunk_size` payouts of the batch not yet marked started.
    Returns (started now, still unstarted). Each start is idempotent (id from the payout id,
    USE_EXISTING / REJECT_DUPLICATE): a chunk retried after a crash starts nothing twice."""
    i = bulk_payout_items.c
    async with sessionmaker() as session:
        rows = [dict(r) for r in (await session.execute(
            select(payouts).join(bulk_payout_items, i.payout_id == payouts.c.id)
            .where(i.bulk_payout_id == batch_id, i.status == ACCEPTED, i.started_at.is_(None))
            .order_by(i.line).limit(chunk_size)
        )).mappings().all()]
    gate = asyncio.Semaphore(settings.bulk_payout_intake_concurrency)
    started: list[str] = []

    async def one(row: dict) -> None:
        async with gate:
            if await start_payout_workflow(client, settings, row):
                started.append(row["id"])
                heartbeat(len(started))

    await asyncio.gather(*(one(r) for r in rows))
    async with sessionmaker() as session:
        if started:
            await session.execute(update(bulk_payout_items).where(
                i.bulk_payout_id == batch_id, i.payout_id == _any(started)).values(started_at=func.now()))
        remaining = await session.scalar(select(func.count()).select_from(bulk_payout_items).where(
            i.bulk_payout_id == batch_id, i.status == ACCEPTED, i.started_at.is_(None)))
        if remaining == 0:
            await session.execute(update(bulk_payouts).where(
                bulk_payouts.c.id == batch_id, bulk_payouts.c.intake_completed_at.is_(None),
            ).values(intake_completed_at=func.now(), updated_at=func.now()))
        await session.commit()
    if len(started) < len(rows):
        raise RuntimeError(f"{len(rows) - len(started)} payout workflow start(s) failed; retrying the chunk")
    return len(started), int(remaining or 0)


# --- reads ---------------------------------------------------------------------------------------


async def _status_counts(session: AsyncSession, batch_ids: list[str]) -> dict[str, dict[str, int]]:
    if not batch_ids:
        return {}
    i = bulk_payout_items.c
    rows = await session.execute(
        select(i.bulk_payout_id, payouts.c.status, func.count())
        .join(payouts, payouts.c.id == i.payout_id)
        .where(i.bulk_payout_id == _any(batch_ids), i.status == ACCEPTED)
        .group_by(i.bulk_payout_id, payouts.c.status)
    )
    out: dict[str, dict[str, int]] = {}
    for bid, status, n in rows:
        out.setdefault(bid, {})[status] = n
    started = await session.execute(
        select(i.bulk_payout_id, func.count()).where(
            i.bulk_payout_id == _any(batch_ids), i.started_at.is_not(None)).group_by(i.bulk_payout_id))
    for bid, n in started:
        out.setdefault(bid, {})["_started"] = n
    return out


async def _approvals(session: AsyncSession, batch_ids: list[str]) -> dict[str, dict]:
    kind_is_bulk, target_id = _approval_action()
    rows = await session.execute(
        select(target_id.label("bid"), ops_actions.c.id, ops_actions.c.status)
        .where(kind_is_bulk, target_id == _any(batch_ids))
        .order_by(ops_actions.c.created_at)
    )
    return {r.bid: {"action_id": r.id, "action_status": r.status} for r in rows}


def _view(row: dict, counts: dict[str, int], approval: dict | None) -> dict:
    by_status = {k: v for k, v in counts.items() if not k.startswith("_")}
    terminal = sum(n for s, n in by_status.items() if s in TERMINAL)
    accepted = row["accepted_count"]
    status = row["status"]
    if status == AWAITING_APPROVAL and approval and approval["action_status"] in ("rejected", "expired", "failed"):
        status = f"approval_{approval['action_status']}"
    elif status == RELEASED:
        status = "completed" if accepted == terminal else "processing"
    return {
        "id": row["id"],
        "merchant_id": row["merchant_id"],
        "mode": row["mode"],
        "source": row["source"],
        "status": status,
        "approval": {"required": row["approval_required"], **(approval or {"action_id": None, "action_status": None})},
        "item_count": row["item_count"],
        "accepted_count": accepted,
        "rejected_count": row["rejected_count"],
        "totals": [{"currency": c, "amount_minor": v, "amount": format_amount(v, c)} for c, v in sorted(row["totals"].items())],
        "payouts_by_status": by_status,
        "intake": {"started": counts.get("_started", 0), "total": accepted,
                   "completed_at": row["intake_completed_at"].isoformat() if row["intake_completed_at"] else None},
        "progress": {"terminal": terminal, "total": accepted,
                     "fraction": round(terminal / accepted, 4) if accepted else 1.0},
        "failure_reason": row["failure_reason"],
        "created_by": row["created_by"],
        "created_at": row["created_at"].isoformat(),
        "released_at": row["released_at"].isoformat() if row["released_at"] else None,
        "links": {"self": f"/api/v1/bulk-payouts/{row['id']}", "items": f"/api/v1/bulk-payouts/{row['id']}/items",
                  "approval": f"/api/v1/ops/actions/{approval['action_id']}" if approval else None},
    }


def _item_view(r) -> dict:
    if r["status"] == ACCEPTED:
        return {"line": r["line"], "reference": r["reference"], "status": ACCEPTED, "payout_id": r["payout_id"],
                "error": None}
    error = {"code": r["error_code"], "field": r["error_field"], "reason": r["error_reason"]}
    if r["existing_payout_id"]:
        error["existing_payout_id"] = r["existing_payout_id"]
    return {"line": r["line"], "reference": r["reference"], "status": REJECTED, "payout_id": None, "error": error}


async def list_items(session: AsyncSession, batch_id: str, *, status: str | None = None, after_line: int = 0,
                     limit: int | None = None) -> list[dict]:
    i = bulk_payout_items.c
    stmt = select(i.line, i.reference, i.status, i.payout_id, i.error_code, i.error_field, i.error_reason,
                  i.existing_payout_id).where(i.bulk_payout_id == batch_id, i.line > after_line).order_by(i.line)
    if status:
        stmt = stmt.where(i.status == status)
    if limit:
        stmt = stmt.limit(limit)
    return [_item_view(r) for r in (await session.execute(stmt)).mappings().all()]


async def get_bulk_payout(session: AsyncSession, batch_id: str, scope_merchant_id: str | None,
                          *, with_items: bool = False) -> dict:
    row = (await session.execute(select(bulk_payouts).where(bulk_payouts.c.id == batch_id))).mappings().first()
    if row is None or (scope_merchant_id is not None and row["merchant_id"] != scope_merchant_id):
        raise NotFound(f"bulk payout {batch_id} not found")
    counts = (await _status_counts(session, [batch_id])).get(batch_id, {})
    approval = (await _approvals(session, [batch_id])).get(batch_id)
    view = _view(dict(row), counts, approval)
    if with_items:
        view["items"] = await list_items(session, batch_id)
    await session.commit()
    return view


async def list_bulk_payouts(session: AsyncSession, *, merchant_id: str | None, limit: int = 50,
                            cursor: str | None = None) -> tuple[list[dict], str | None]:
    conditions = []
    if merchant_id is not None:
        conditions.append(bulk_payouts.c.merchant_id == merchant_id)
    if cursor:
        c_created, c_id = decode_cursor(cursor)
        conditions.append(tuple_(bulk_payouts.c.created_at, bulk_payouts.c.id) < tuple_(c_created, c_id))
    rows = [dict(r) for r in (await session.execute(
        select(bulk_payouts).where(and_(True, *conditions))
        .order_by(bulk_payouts.c.created_at.desc(), bulk_payouts.c.id.desc()).limit(limit + 1)
    )).mappings().all()]
    next_cursor = None
    if len(rows) > limit:
        rows = rows[:limit]
        next_cursor = encode_cursor(rows[-1]["created_at"], rows[-1]["id"])
    ids = [r["id"] for r in rows]
    counts = await _status_counts(session, ids)
    approvals = await _approvals(session, ids) if ids else {}
    await session.commit()
    return [_view(r, counts.get(r["id"], {}), approvals.get(r["id"])) for r in rows], next_cursor

