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
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity
from temporalio.exceptions import ApplicationError

from connectors.base import ConnectorError
from connectors.rails import FILE_UNKNOWN_OUTCOME_CODES, BatchRailConnector, FileRejected
from connectors.registry import ConnectorRegistry
from core.platform import metrics
from core.rails import store as rail_store
from core.platform.crypto import FieldCipher
from core.rails.nacha import AchEntry, AchOriginator, build_nacha
from core.platform.names import payout_workflow_id
from core.rails.pain001 import SepaEntry, build_pain001
from core.payouts.models import PayoutStatus
from core.payouts.store import get_payout_row, publish_payout_update, transition
from core.rails.models import (
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
from core.rails.rules import BusinessCalendar, beneficiary_country
from core.sla import store as sla_store
from core.sla.rules import PayoutKeys, resolve_sla_rule, rule_summary, sla_target
from core.payouts.routing import ConnectorInfo, NoRoute, RouteFacts, decide_route
from core.platform.settings import Settings
from core.alerts.store import alert_id_by_dedupe_key, upsert_alert

log = logging.getLogger("payops.activities.rails")

ERR_NO_ROUTE = "NoRoute"
FILE_FORMATS = {"ach": "nacha", "sepa": "pain.001.001.09"}
# payout_batches.error while the bank's answer to the file is unknown (asked before any resend)
FILE_OUTCOME_UNKNOWN = "outcome unknown"


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
        calendars = await rail_store.load_calendars(session)
        decision = decide_route(
            facts, rules, calendars, self.connector_infos(),
            await rail_store.health_states(session), await rail_store.active_controls(session, _now()),
            avoid_connectors=avoid,
        )
        by_rail = {r.rail: r for r in rules}
        # The settlement target comes from the most specific SLA rule for the chosen rail and
        # connector (the rail's own terms when none matches): core/sla/rules.py.
        rail_rule = by_rail[decision["rail"]]
        keys = PayoutKeys(rail=decision["rail"], connector=decision["connector"], country=facts.country,
                          priority=facts.priority)
        sla_rule = resolve_sla_rule(await sla_store.load_rules(session), keys)
        target = sla_target(rail_rule, sla_rule, at, calendars.get(rail_rule.calendar)
                            or BusinessCalendar(rail_rule.calendar))
        decision["settlement_target_at"] = target.isoformat()
        decision["sla_rule"] = rule_summary(sla_rule)
        return decision, by_rail

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
            entry = await rail_store.enqueue_batch_entry(
                session, payout_id=params.payout_id, rail=params.rail, connector=params.connector,
                cutoff_at=params.cutoff_at)
        return BatchEnqueueResult(cutoff_at=entry["cutoff_at"], batch_id=entry["batch_id"])

    @activity.defn(name="withdraw_payout_from_batch")
    async def withdraw_payout_from_batch(self, params: BatchWithdrawInput) -> BatchWithdrawResult:
        """Take a waiting payout out of its rail's queue (cancel); refused once a batch claimed it."""
        async with self._sessionmaker() as session, session.begin():
            entry = await rail_store.lock_batch_entry(session, params.payout_id)
            if entry is None:
                return BatchWithdrawResult(withdrawn=True)
            if entry["batch_id"] is not None:
                return BatchWithdrawResult(withdrawn=False, batch_id=entry["batch_id"])
            await rail_store.delete_batch_entry(session, params.payout_id)
        return BatchWithdrawResult(withdrawn=True)

    # --- SLA ---------------------------------------------------------------------------

    @activity.defn(name="raise_sla_breach_alert")
    async def raise_sla_breach_alert(self, params: SlaBreachInput) -> SlaBreachResult:
        """One high-severity alert per payout past its settlement target (dedupe key per payout)."""
        dedupe_key = f"payout_sla_breach:{params.payout_id}"
        async with self._sessionmaker() as session, session.begin():
            existing = await alert_id_by_dedupe_key(session, dedupe_key)
            if existing is not None:
                return SlaBreachResult(raised=False)
            # The SLA rule routing resolved for this payout's rail, connector, country and
            # priority (None: the rail's own terms): the one that set the target.
            sla_rule = await sla_store.payout_sla_rule(session, params.payout_id)
            rule_text = (f"SLA rule {sla_rule['id']}" if sla_rule else f"the {params.rail} rail's own terms")
            inserted = await upsert_alert(
                session, rule="payout_sla_breach", severity="high", dedupe_key=dedupe_key,
                message=(f"payout {params.payout_id} is past its settlement target "
                         f"{params.settlement_target_at.isoformat()} ({params.rail} via {params.connector}, "
                         f"status {params.status}; target from {rule_text})"),
                data={"payout_id": params.payout_id, "rail": params.rail, "connector": params.connector,
                      "settlement_target_at": params.settlement_target_at.isoformat(), "status": params.status,
                      "sla_rule": sla_rule},
                refresh=None,  # an open breach alert stays as it is
            )
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
            existing = await rail_store.find_batch(session, batch_id, for_update=True)
            if existing is None:
                waiting = await rail_store.count_waiting_entries(session, rail, cutoff)
                if not waiting:
                    return BatchInfo(batch_id=None, rail=rail, cutoff_at=cutoff, status="empty")
                connector = await rail_store.waiting_entries_connector(session, rail, cutoff)
                await rail_store.insert_batch(session, batch_id=batch_id, rail=rail, connector=connector,
                                              cutoff_at=cutoff, file_format=FILE_FORMATS.get(rail, rail))
                existing = await rail_store.get_batch(session, batch_id, for_update=True)
            if existing["status"] == "collecting":
                await rail_store.claim_waiting_entries(session, rail=rail, cutoff=cutoff, batch_id=batch_id)
                existing = await rail_store.refresh_batch_totals(session, batch_id)
        return BatchInfo(batch_id=batch_id, rail=rail, cutoff_at=cutoff, status=existing["status"],
                         entry_count=existing["entry_count"], total_amount_minor=existing["total_amount_minor"])

    @activity.defn(name="build_payout_batch_file")
    async def build_payout_batch_file(self, params: BatchIdInput) -> BatchInfo:
        """Build the batch's file (NACHA / pain.001) with its control totals, once."""
        async with self._sessionmaker() as session, session.begin():
            batch = await rail_store.get_batch(session, params.batch_id, for_update=True)
            if batch["status"] == "collecting":
                rows = await rail_store.batch_file_rows(session, params.batch_id)
                content, control, name = self._build_file(batch, rows)
                batch = await rail_store.mark_batch_built(
                    session, params.batch_id, content=content, file_name=name,
                    file_sha256=hashlib.sha256(content).hexdigest(), control=control)
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
            batch = await rail_store.get_batch(session, params.batch_id)
        if batch["status"] in ("submitted", "rejected"):
            return BatchSubmitResult(batch_id=batch["id"], status=batch["status"],
                                     accepted_count=batch["accepted_count"], rejected_count=batch["rejected_count"],
                                     error=batch["error"])
        connector = self._connectors.get(batch["connector"])
        assert isinstance(connector, BatchRailConnector), f"{connector.name} takes no files"
        if (batch["error"] or "").startswith(FILE_OUTCOME_UNKNOWN):
            # an earlier POST's answer was ambiguous: the bank may have the file. Ask it before
            # sending anything again; only its "no such file" lets the file go again.
            known = await self._inquire_file(connector, batch)
            if known is not None:
                return await self._record_file_report(batch, known, connector.name)
        try:
            report = await connector.submit_file(batch["id"], batch["file_content"])
        except FileRejected as exc:
            error = "; ".join(exc.errors[:5]) or str(exc)
            async with self._sessionmaker() as session, session.begin():
                await rail_store.reject_batch(session, batch["id"], error=error, rejected_count=batch["entry_count"])
            metrics.connector_requests_total.labels(connector.name, "permanent_error").inc()
            metrics.observe_connector_call(connector.name, batch["rail"], "permanent_error", error_code="file_rejected")
            return BatchSubmitResult(batch_id=batch["id"], status="rejected", rejected_count=batch["entry_count"],
                                     error=error)
        except ConnectorError as exc:
            metrics.connector_requests_total.labels(connector.name, "transient_error").inc()
            metrics.observe_connector_call(connector.name, batch["rail"], "transient_error", error_code=exc.code)
            if exc.outcome == "unknown" or exc.code in FILE_UNKNOWN_OUTCOME_CODES:
                # Not a refusal: the bank may have taken the file. Recorded, so that the next
                # attempt (the activity's retry policy: backoff, for as long as it takes) asks
                # the bank about the file before anything else happens to its payouts.
                async with self._sessionmaker() as session, session.begin():
                    await rail_store.set_batch_error(session, batch["id"], f"{FILE_OUTCOME_UNKNOWN}: {exc}")
                log.warning("batch %s: the bank's answer to the file was ambiguous (%s); asking it next", batch["id"], exc)
                raise ApplicationError(f"outcome unknown: {exc}", exc.code, type="BatchOutcomeUnknown") from None
            raise ApplicationError(str(exc), exc.code, type="ConnectorTransient") from None
        return await self._record_file_report(batch, report, connector.name)

    async def _inquire_file(self, connector: BatchRailConnector, batch: dict):
        """The bank's report of the batch's file, None when it confirms it has none (the mark is
        cleared: sending the file cannot pay twice). Raises a retryable error while it does not
        answer."""
        try:
            known = await connector.file_status(batch["id"])
        except ConnectorError as exc:
            raise ApplicationError(f"outcome unknown, and the bank did not answer the file inquiry: {exc}",
                                   exc.code, type="BatchOutcomeUnknown") from None
        log.info("batch %s: file inquiry: %s", batch["id"], "found" if known is not None else "the bank has no such file")
        if known is None:
            async with self._sessionmaker() as session, session.begin():
                await rail_store.set_batch_error(session, batch["id"], None)
        return known

    async def _record_file_report(self, batch: dict, report, connector_name: str) -> BatchSubmitResult:
        """Each entry's outcome from the bank's report (its answer to the POST, or to an inquiry)."""
        metrics.connector_requests_total.labels(connector_name, "accepted").inc()
        metrics.observe_connector_call(connector_name, batch["rail"], "accepted")
        now = _now()
        async with self._sessionmaker() as session, session.begin():
            await rail_store.record_file_report(
                session, batch["id"], entries=[e.model_dump() for e in report.entries], file_id=report.file_id,
                accepted_count=report.accepted_count, rejected_count=report.rejected_count, now=now)
        return BatchSubmitResult(batch_id=batch["id"], status="submitted", accepted_count=report.accepted_count,
                                 rejected_count=report.rejected_count)

    @activity.defn(name="signal_batch_outcomes")
    async def signal_batch_outcomes(self, params: BatchIdInput) -> BatchSignalResult:
        """Tell each payout of the batch its outcome (payouts ignore a repeated signal)."""
        async with self._sessionmaker() as session:
            rows = await rail_store.batch_entry_outcomes(session, params.batch_id)
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
