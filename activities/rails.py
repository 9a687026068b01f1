"""Side effects of routing, batching, SLA monitoring and connector health.

Idempotent like every payout activity: routing writes its decision under an event key; a payout
enters `payout_batch_entries` once (primary key) and is claimed by one batch ever; a batch is one
row per (rail, cutoff) and its file goes to the bank under the batch id; an SLA alert has a
dedupe key per payout.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from datetime import datetime, timezone
from zoneinfo import ZoneInfo

from redis.asyncio import Redis
from sqlalchemy import func, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity
from temporalio.exceptions import ApplicationError

from connectors.base import ConnectorError
from connectors.rails import BatchRailConnector, FileRejected
from connectors.registry import ConnectorRegistry
from core import metrics, rail_store
from core.crypto import FieldCipher
from core.nacha import AchEntry, AchOriginator, build_nacha
from core.names import payout_workflow_id
from core.pain001 import SepaEntry, build_pain001
from core.payout_models import PayoutStatus
from core.payout_store import get_payout_row, publish_payout_update, transition
from core.rail_models import (
    BatchEnqueueInput,
    BatchEnqueueResult,
    BatchIdInput,
    BatchInfo,
    BatchInput,
    BatchOutcomeSignal,
    BatchSignalResult,
    BatchSubmitResult,
    BatchWithdrawInput,
    BatchWithdrawResult,
    FailoverInput,
    HealthRunInput,
    HealthRunResult,
    RailRouteDecision,
    RailRouteInput,
    SlaBreachInput,
    SlaBreachResult,
)
from core.rails import beneficiary_country
from core.routing import ConnectorInfo, NoRoute, RouteFacts, decide_route
from core.settings import Settings
from core.tables import ALERT_OPEN_PREDICATE, alerts, payout_batch_entries, payout_batches, payouts

log = logging.getLogger("payops.activities.rails")

ERR_NO_ROUTE = "NoRoute"
FILE_FORMATS = {"ach": "nacha", "sepa": "pain.001.001.09"}


def batch_id_for(rail: str, cutoff_at: datetime) -> str:
    return f"bat_{rail}_{cutoff_at.astimezone(timezone.utc):%Y%m%dT%H%MZ}"


def _now() -> datetime:
    return datetime.now(timezone.utc)


class RailActivities:
    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        redis: Redis | None,
        connectors: ConnectorRegistry,
        cipher: FieldCipher,
        settings: Settings,
    ) -> None:
        self._sessionmaker = sessionmaker
        self._redis = redis
        self._connectors = connectors
        self._cipher = cipher
        self._settings = settings

    def connector_infos(self) -> list[ConnectorInfo]:
        return [ConnectorInfo(name=c.name, rails=frozenset(c.rails), preference=c.preference, routable=c.routable)
                for c in self._connectors]

    # --- routing -----------------------------------------------------------------------

    async def decide(self, session: AsyncSession, row: dict, at: datetime, avoid: frozenset[str]) -> dict:
        beneficiary = self._cipher.decrypt_json(row["beneficiary_encrypted"])
        facts = RouteFacts(
            payout_id=row["id"], merchant_id=row["merchant_id"], method=row["method"], currency=row["currency"],
            country=beneficiary_country(row["method"], beneficiary), amount_minor=row["amount_minor"],
            priority=row["priority"], at=at,
        )
        rules = await rail_store.load_rules(session)
        return decide_route(
            facts, rules, await rail_store.load_calendars(session), self.connector_infos(),
            await rail_store.health_states(session), await rail_store.active_controls(session, _now()),
            avoid_connectors=avoid,
        ), {r.rail: r for r in rules}

    @activity.defn(name="route_payout_by_rules")
    async def route_payout_by_rules(self, params: RailRouteInput) -> RailRouteDecision:
        """Choose rail + connector by cost/SLA over health, pauses and overrides; store the
        decision, its explanation and the settlement target on the payout."""
        async with self._sessionmaker() as session, session.begin():
            row = await get_payout_row(session, params.payout_id)
            try:
                decision, rules = await self.decide(session, row, params.at, frozenset(params.avoid_connectors))
            except NoRoute as exc:
                raise ApplicationError(str(exc), "no_route", type=ERR_NO_ROUTE, non_retryable=True) from None
            target = datetime.fromisoformat(decision["settlement_target_at"]) if decision["settlement_target_at"] else None
            row, applied = await transition(
                session, payout_id=params.payout_id, to_status=PayoutStatus.ROUTED, event_key=params.event_key,
                reason=decision["why"], data={"rail": decision["rail"], "connector": decision["connector"]},
                extra_columns={"rail": decision["rail"], "connector": decision["connector"], "routing": decision,
                               "settlement_target_at": target},
            )
        if applied:
            await publish_payout_update(self._redis, row)
        rule = rules[decision["rail"]]
        cutoff = datetime.fromisoformat(decision["cutoff_at"]) if decision["cutoff_at"] else None
        return RailRouteDecision(
            rail=decision["rail"], connector=decision["connector"],
            batch=row["priority"] == "batch" and rule.batch and cutoff is not None
            and isinstance(self._connectors.get(decision["connector"]), BatchRailConnector),
            cutoff_at=cutoff, settlement_target_at=target, fallbacks=decision["fallbacks"], why=decision["why"],
        )

    @activity.defn(name="fail_over_payout")
    async def fail_over_payout(self, params: FailoverInput) -> None:
        """Record that the payout moves to the next candidate (same payout, same reference)."""
        async with self._sessionmaker() as session, session.begin():
            current = await get_payout_row(session, params.payout_id, for_update=True)
            routing = dict(current["routing"] or {})
            routing["failovers"] = [*routing.get("failovers", []), {
                "from": params.from_connector, "to": params.connector, "rail": params.rail, "reason": params.reason,
                "attempt": params.attempt,
            }]
            routing["rail"], routing["connector"] = params.rail, params.connector
            row, applied = await transition(
                session, payout_id=params.payout_id, to_status=PayoutStatus.ROUTED,
                event_key=f"failover:{params.attempt}",
                reason=f"failover from {params.from_connector} to {params.connector} ({params.rail}): {params.reason}",
                data={"rail": params.rail, "connector": params.connector, "from": params.from_connector},
                extra_columns={"rail": params.rail, "connector": params.connector, "routing": routing},
            )
        if applied:
            await publish_payout_update(self._redis, row)

    # --- batches: the payout's side ---------------------------------------------------------

    @activity.defn(name="enqueue_payout_for_batch")
    async def enqueue_payout_for_batch(self, params: BatchEnqueueInput) -> BatchEnqueueResult:
        # One statement (a cutoff queues thousands): the amount comes from the payout row, and a
        # repeat finds the entry already there (whatever batch has claimed it since).
        async with self._sessionmaker() as session, session.begin():
            entry = (await session.execute(text("""
                WITH queued AS (
                    INSERT INTO payout_batch_entries (payout_id, rail, connector, cutoff_at, amount_minor, currency)
                    SELECT id, CAST(:rail AS varchar), CAST(:connector AS varchar), CAST(:cutoff_at AS timestamptz),
                           amount_minor, currency
                    FROM payouts WHERE id = :payout_id
                    ON CONFLICT (payout_id) DO NOTHING
                    RETURNING cutoff_at, batch_id
                )
                SELECT cutoff_at, batch_id FROM queued
                UNION ALL
                SELECT cutoff_at, batch_id FROM payout_batch_entries WHERE payout_id = :payout_id
                LIMIT 1
            """), {"payout_id": params.payout_id, "rail": params.rail, "connector": params.connector,
                   "cutoff_at": params.cutoff_at})).mappings().one()
        return BatchEnqueueResult(cutoff_at=entry["cutoff_at"], batch_id=entry["batch_id"])

    @activity.defn(name="withdraw_payout_from_batch")
    async def withdraw_payout_from_batch(self, params: BatchWithdrawInput) -> BatchWithdrawResult:
        """Take a waiting payout out of its rail's queue (cancel); refused once a batch claimed it."""
        async with self._sessionmaker() as session, session.begin():
            entry = (await session.execute(select(payout_batch_entries).where(
                payout_batch_entries.c.payout_id == params.payout_id).with_for_update())).mappings().one_or_none()
            if entry is None:
                return BatchWithdrawResult(withdrawn=True)
            if entry["batch_id"] is not None:
                return BatchWithdrawResult(withdrawn=False, batch_id=entry["batch_id"])
            await session.execute(payout_batch_entries.delete().where(
                payout_batch_entries.c.payout_id == params.payout_id))
        return BatchWithdrawResult(withdrawn=True)

    # --- SLA ---------------------------------------------------------------------------

    @activity.defn(name="raise_sla_breach_alert")
    async def raise_sla_breach_alert(self, params: SlaBreachInput) -> SlaBreachResult:
        """One high-severity alert per payout past its settlement target (dedupe key per payout)."""
        dedupe_key = f"payout_sla_breach:{params.payout_id}"
        async with self._sessionmaker() as session, session.begin():
            existing = await session.scalar(select(alerts.c.id).where(alerts.c.dedupe_key == dedupe_key))
            if existing is not None:
                return SlaBreachResult(raised=False)
            inserted = await session.scalar(insert(alerts).values(
                rule="payout_sla_breach", severity="high", dedupe_key=dedupe_key,
                message=(f"payout {params.payout_id} is past its settlement target "
                         f"{params.settlement_target_at.isoformat()} ({params.rail} via {params.connector}, "
                         f"status {params.status})"),
                data={"payout_id": params.payout_id, "rail": params.rail, "connector": params.connector,
                      "settlement_target_at": params.settlement_target_at.isoformat(), "status": params.status},
            ).on_conflict_do_nothing(
                index_elements=[alerts.c.dedupe_key], index_where=ALERT_OPEN_PREDICATE,
            ).returning(alerts.c.id))
        if inserted is None:
            return SlaBreachResult(raised=False)
        metrics.sla_violations_total.labels(params.rail or "unknown").inc()
        return SlaBreachResult(raised=True)

    # --- batches: the BatchWorkflow's side ----------------------------------------------------

    @activity.defn(name="open_payout_batch")
    async def open_payout_batch(self, params: BatchInput) -> BatchInfo:
        """Create (or find) the batch of (rail, cutoff) and claim the waiting payouts due by then.

        Claiming sets the entry's batch_id where it is NULL, under the batch row's lock, and only
        while the batch is still collecting: a re-run of the cutoff finds the same batch and claims
        nothing twice; a payout belongs to one batch ever."""
        assert params.cutoff_at is not None
        cutoff = params.cutoff_at
        rail = params.rail
        batch_id = batch_id_for(rail, cutoff)
        async with self._sessionmaker() as session, session.begin():
            existing = (await session.execute(select(payout_batches).where(
                payout_batches.c.id == batch_id).with_for_update())).mappings().one_or_none()
            if existing is None:
                waiting = await session.scalar(select(func.count()).select_from(payout_batch_entries).where(
                    payout_batch_entries.c.batch_id.is_(None), payout_batch_entries.c.rail == rail,
                    payout_batch_entries.c.cutoff_at <= cutoff))
                if not waiting:
                    return BatchInfo(batch_id=None, rail=rail, cutoff_at=cutoff, status="empty")
                connector = await session.scalar(select(payout_batch_entries.c.connector).where(
                    payout_batch_entries.c.batch_id.is_(None), payout_batch_entries.c.rail == rail,
                    payout_batch_entries.c.cutoff_at <= cutoff).limit(1))
                await session.execute(insert(payout_batches).values(
                    id=batch_id, rail=rail, connector=connector, cutoff_at=cutoff, status="collecting",
                    file_format=FILE_FORMATS.get(rail, rail),
                ).on_conflict_do_nothing())
                existing = (await session.execute(select(payout_batches).where(
                    payout_batches.c.id == batch_id).with_for_update())).mappings().one()
            if existing["status"] == "collecting":
                await session.execute(text("""
                    WITH locked AS (
                        SELECT payout_id, created_at FROM payout_batch_entries
                        WHERE batch_id IS NULL AND rail = :rail AND cutoff_at <= :cutoff
                        FOR UPDATE SKIP LOCKED
                    ), claim AS (
                        SELECT payout_id, row_number() OVER (ORDER BY created_at, payout_id) AS n FROM locked
                    )
                    UPDATE payout_batch_entries e
                    SET batch_id = CAST(:batch_id AS varchar),
                        sequence = claim.n + COALESCE((SELECT max(sequence) FROM payout_batch_entries
                                                       WHERE batch_id = CAST(:batch_id AS varchar)), 0)
                    FROM claim WHERE e.payout_id = claim.payout_id
                """), {"rail": rail, "cutoff": cutoff, "batch_id": batch_id})
                totals = (await session.execute(select(
                    func.count(), func.coalesce(func.sum(payout_batch_entries.c.amount_minor), 0),
                    func.min(payout_batch_entries.c.currency),
                ).where(payout_batch_entries.c.batch_id == batch_id))).one()
                existing = (await session.execute(update(payout_batches).where(payout_batches.c.id == batch_id).values(
                    entry_count=totals[0], total_amount_minor=totals[1], currency=totals[2], updated_at=func.now(),
                ).returning(*payout_batches.c))).mappings().one()
        return BatchInfo(batch_id=batch_id, rail=rail, cutoff_at=cutoff, status=existing["status"],
                         entry_count=existing["entry_count"], total_amount_minor=existing["total_amount_minor"])

    @activity.defn(name="build_payout_batch_file")
    async def build_payout_batch_file(self, params: BatchIdInput) -> BatchInfo:
        """Build the batch's file (NACHA / pain.001) with its control totals, once."""
        async with self._sessionmaker() as session, session.begin():
            batch = (await session.execute(select(payout_batches).where(
                payout_batches.c.id == params.batch_id).with_for_update())).mappings().one()
            if batch["status"] == "collecting":
                rows = (await session.execute(
                    select(payout_batch_entries.c.payout_id, payout_batch_entries.c.amount_minor,
                           payouts.c.beneficiary_encrypted, payouts.c.description)
                    .join(payouts, payouts.c.id == payout_batch_entries.c.payout_id)
                    .where(payout_batch_entries.c.batch_id == params.batch_id)
                    .order_by(payout_batch_entries.c.sequence)
                )).all()
                content, control, name = self._build_file(batch, rows)
                batch = (await session.execute(update(payout_batches).where(payout_batches.c.id == params.batch_id).values(
                    status="built", file_content=content, file_name=name,
                    file_sha256=hashlib.sha256(content).hexdigest(), control=control, updated_at=func.now(),
                ).returning(*payout_batches.c))).mappings().one()
        return BatchInfo(batch_id=batch["id"], rail=batch["rail"], cutoff_at=batch["cutoff_at"],
                         status=batch["status"], entry_count=batch["entry_count"],
                         total_amount_minor=batch["total_amount_minor"])

    def _build_file(self, batch: dict, rows) -> tuple[bytes, dict, str]:
        now = _now()
        cutoff = batch["cutoff_at"]
        decrypt = self._cipher.decrypt_json
        if batch["rail"] == "ach":
            local = cutoff.astimezone(ZoneInfo("America/New_York"))
            entries = []
            for r in rows:
                b = decrypt(r.beneficiary_encrypted)
                entries.append(AchEntry(payout_id=r.payout_id, routing_number=b["routing_number"],
                                        account_number=b["account_number"],
                                        account_type=b.get("account_type", "checking"), name=b["name"],
                                        amount_minor=r.amount_minor))
            content, control = build_nacha(entries, originator=AchOriginator(), created=local,
                                           effective=local.date())
            return content, control, f"{batch['id']}.ach"
        if batch["rail"] == "sepa":
            local = cutoff.astimezone(ZoneInfo("Europe/Paris"))
            entries = []
            for r in rows:
                b = decrypt(r.beneficiary_encrypted)
                entries.append(SepaEntry(payout_id=r.payout_id, iban=b["iban"], bic=b.get("bic"), name=b["name"],
                                         amount_minor=r.amount_minor, remittance=r.description))
            content, control = build_pain001(entries, message_id=batch["id"], created=now.astimezone(local.tzinfo),
                                             execution_date=local.date())
            return content, control, f"{batch['id']}.xml"
        raise ApplicationError(f"rail {batch['rail']} has no batch file format", type="NoFileFormat",
                               non_retryable=True)

    @activity.defn(name="submit_payout_batch_file")
    async def submit_payout_batch_file(self, params: BatchIdInput) -> BatchSubmitResult:
        """Send the file to the bank (idempotent on the batch id) and record each entry's outcome."""
        async with self._sessionmaker() as session:
            batch = (await session.execute(select(payout_batches).where(
                payout_batches.c.id == params.batch_id))).mappings().one()
        if batch["status"] in ("submitted", "rejected"):
            return BatchSubmitResult(batch_id=batch["id"], status=batch["status"],
                                     accepted_count=batch["accepted_count"], rejected_count=batch["rejected_count"],
                                     error=batch["error"])
        connector = self._connectors.get(batch["connector"])
        assert isinstance(connector, BatchRailConnector), f"{connector.name} takes no files"
        try:
            report = await connector.submit_file(batch["id"], batch["file_content"])
        except FileRejected as exc:
            error = "; ".join(exc.errors[:5]) or str(exc)
            async with self._sessionmaker() as session, session.begin():
                await session.execute(update(payout_batches).where(payout_batches.c.id == batch["id"]).values(
                    status="rejected", error=error, rejected_count=batch["entry_count"], updated_at=func.now()))
                await session.execute(update(payout_batch_entries).where(
                    payout_batch_entries.c.batch_id == batch["id"]).values(outcome="file_rejected", error=error))
            metrics.connector_requests_total.labels(connector.name, "permanent_error").inc()
            return BatchSubmitResult(batch_id=batch["id"], status="rejected", rejected_count=batch["entry_count"],
                                     error=error)
        except ConnectorError as exc:
            metrics.connector_requests_total.labels(connector.name, "transient_error").inc()
            raise ApplicationError(str(exc), exc.code, type="ConnectorTransient") from None
        metrics.connector_requests_total.labels(connector.name, "accepted").inc()
        now = _now()
        async with self._sessionmaker() as session, session.begin():
            await session.execute(text("""
                UPDATE payout_batch_entries e SET outcome = r.status, bank_payment_id = r.payment_id, error = r.error
                FROM jsonb_to_recordset(CAST(:entries AS jsonb))
                     AS r(reference text, status text, payment_id text, error text)
                WHERE e.payout_id = r.reference AND e.batch_id = :batch_id
            """), {"entries": _json([e.model_dump() for e in report.entries]), "batch_id": batch["id"]})
            await session.execute(text("""
                UPDATE payouts p SET bank_payment_id = e.bank_payment_id, submitted_at = :now
                FROM payout_batch_entries e
                WHERE e.batch_id = :batch_id AND e.payout_id = p.id AND e.outcome = 'accepted'
            """), {"batch_id": batch["id"], "now": now})
            await session.execute(update(payout_batches).where(payout_batches.c.id == batch["id"]).values(
                status="submitted", bank_file_id=report.file_id, accepted_count=report.accepted_count,
                rejected_count=report.rejected_count, submitted_at=now, updated_at=func.now()))
        return BatchSubmitResult(batch_id=batch["id"], status="submitted", accepted_count=report.accepted_count,
                                 rejected_count=report.rejected_count)

    @activity.defn(name="signal_batch_outcomes")
    async def signal_batch_outcomes(self, params: BatchIdInput) -> BatchSignalResult:
        """Tell each payout of the batch its outcome (payouts ignore a repeated signal)."""
        async with self._sessionmaker() as session:
            rows = (await session.execute(select(
                payout_batch_entries.c.payout_id, payout_batch_entries.c.outcome,
                payout_batch_entries.c.bank_payment_id, payout_batch_entries.c.error,
            ).where(payout_batch_entries.c.batch_id == params.batch_id))).all()
        client = activity.client()
        limit = asyncio.Semaphore(self._settings.batch_signal_concurrency)
        done = 0

        async def send(r) -> None:
            nonlocal done
            async with limit:
                await client.get_workflow_handle(payout_workflow_id(r.payout_id)).signal(
                    "batch_outcome",
                    BatchOutcomeSignal(batch_id=params.batch_id, outcome=r.outcome or "file_rejected",
                                       bank_payment_id=r.bank_payment_id, error=r.error),
                )
                done += 1
                if done % 500 == 0:
                    activity.heartbeat(done)

        await asyncio.gather(*(send(r) for r in rows))
        return BatchSignalResult(signalled=done)

    # --- connector health --------------------------------------------------------------------

    @activity.defn(name="check_connectors_health")
    async def check_connectors_health(self, params: HealthRunInput) -> HealthRunResult:
        connectors = list(self._connectors)
        results = await asyncio.gather(*(c.health() for c in connectors))
        opened = []
        now = _now()
        async with self._sessionmaker() as session, session.begin():
            for h in results:
                row = await rail_store.record_check(
                    session, h.connector, h.healthy, h.latency_ms, h.detail,
                    failures_to_open=self._settings.connector_health_failures_to_open, now=now,
                )
                if row["state"] == "open":
                    opened.append(h.connector)
        return HealthRunResult(checked=len(results), open=opened)


def _json(value) -> str:
    import json

    return json.dumps(value)
