"""Task-queue names, workflow-id formats and search attributes: the one place they are spelled.

Imported by workflow code, so it must stay free of side effects.
"""

from __future__ import annotations

DEFAULT_TASK_QUEUE = "payops"


# Workflow type names: the strings Temporal records in every history, spelled here only.
PAYOUT_WORKFLOW = "PayoutWorkflow"
OPS_ACTION_WORKFLOW = "OpsActionWorkflow"
BATCH_WORKFLOW = "BatchWorkflow"
CONNECTOR_HEALTH_WORKFLOW = "ConnectorHealthWorkflow"
HEALTH_CHECK_WORKFLOW = "HealthCheckWorkflow"
RECONCILIATION_WORKFLOW = "ReconciliationWorkflow"
BANK_RECONCILIATION_WORKFLOW = "BankReconciliationWorkflow"
SYNC_WORKFLOW = "SyncWorkflow"
WEBHOOK_DELIVERY_WORKFLOW = "WebhookDeliveryWorkflow"
WEBHOOK_DISPATCH_WORKFLOW = "WebhookDispatchWorkflow"
EXPORT_WORKFLOW = "ExportWorkflow"
ALERT_CHECK_WORKFLOW = "AlertCheckWorkflow"
ALERT_EXPIRY_WORKFLOW = "AlertExpiryWorkflow"
RECOMMENDATION_WORKFLOW = "RecommendationWorkflow"
PAYOUT_SWEEP_WORKFLOW = "PayoutSweepWorkflow"
BANK_NOTIFICATION_SWEEP_WORKFLOW = "BankNotificationSweepWorkflow"
WORKFLOW_REAPER_WORKFLOW = "WorkflowReaperWorkflow"
API_LOG_RETENTION_WORKFLOW = "ApiLogRetentionWorkflow"
READY_PROBE_WORKFLOW = "ReadyProbeWorkflow"
PAYOUT_SCHEDULE_FIRE_WORKFLOW = "PayoutScheduleFireWorkflow"


def payout_workflow_id(payout_id: str) -> str:
    return f"payout-{payout_id}"


def ops_action_workflow_id(action_id: str) -> str:
    return f"ops-action-{action_id}"


def bulk_payout_intake_workflow_id(bulk_payout_id: str) -> str:
    return f"bulk-payout-intake-{bulk_payout_id}"


def payout_schedule_temporal_id(schedule_id: str) -> str:
    """The Temporal Schedule of a payout schedule; its runs are named <this>-<fire time> by Temporal."""
    return f"payout-schedule-{schedule_id}"


def health_workflow_id(run_id: str) -> str:
    return f"health-check-{run_id}"


def reconciliation_workflow_id(run_id: str) -> str:
    return f"reconciliation-{run_id}"


def reconciliation_schedule_id(left_source: str, right_source: str) -> str:
    return f"reconciliation-daily-{left_source}-{right_source}"  # its runs get a timestamp suffix


def sync_workflow_id(source: str) -> str:
    return f"sync-{source}"


def sync_schedule_id(source: str) -> str:
    return f"sync-{source}"  # the schedule's runs are named sync-{source}-{timestamp} by Temporal


def sync_manual_workflow_id(source: str) -> str:
    return f"sync-{source}-manual"


def sync_backfill_workflow_id(source: str, run: str) -> str:
    return f"sync-{source}-backfill-{run}"


def webhook_dispatcher_workflow_id(task_queue: str) -> str:
    """One dispatcher per task queue (per deployment): it drains the events outbox."""
    return f"webhook-dispatcher-{task_queue}"


def webhook_delivery_workflow_id(event_id: str, endpoint_id: str, redelivery: str | None = None) -> str:
    """One delivery per (event, endpoint): a second dispatch of the pair is refused by Temporal.
    A manual redelivery gets its own suffix so it runs even after the first one closed."""
    base = f"webhook-{event_id}-{endpoint_id}"
    return f"{base}-redeliver-{redelivery}" if redelivery else base


def export_workflow_id(job_id: str) -> str:
    return f"export-{job_id}"


# name -> Temporal indexed value type, as `temporal server start-dev --search-attribute` takes it
SEARCH_ATTRIBUTES: dict[str, str] = {
    "MerchantId": "Keyword",
    "PayoutStatus": "Keyword",
    "Rail": "Keyword",
    "AmountMinor": "Int",
    "Currency": "Keyword",
    "ActionType": "Keyword",
    "ActionStatus": "Keyword",
    "RiskLevel": "Keyword",
}


def search_attribute_keys():
    """Typed keys for SEARCH_ATTRIBUTES (imported lazily so this module stays dependency-free)."""
    from temporalio.common import SearchAttributeKey  # why: keeps this module dependency-free

    make = {"Keyword": SearchAttributeKey.for_keyword, "Int": SearchAttributeKey.for_int}
    return {name: make[kind](name) for name, kind in SEARCH_ATTRIBUTES.items()}
