"""Reading a workflow's history in tests: the steps it ran, whether as activity tasks or (a lean
payout's database steps and polls, patch payout-lean-v1) as local activities, which the history
records as markers."""

from __future__ import annotations

import json
from datetime import datetime, timezone

from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent

LOCAL_ACTIVITY_MARKER = "core_local_activity"


def step_name(event: HistoryEvent) -> str | None:
    """The activity an event schedules or records, else None."""
    if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
        return event.activity_task_scheduled_event_attributes.activity_type.name
    if (event.event_type == EventType.EVENT_TYPE_MARKER_RECORDED
            and event.marker_recorded_event_attributes.marker_name == LOCAL_ACTIVITY_MARKER):
        return json.loads(event.marker_recorded_event_attributes.details["data"].payloads[0].data)["activity_type"]
    return None


def steps(events) -> list[str]:
    """Every activity the history ran, in order, activity task or local."""
    return [name for name in map(step_name, events) if name is not None]


def step_times(events, activity: str) -> list[datetime]:
    """When each run of `activity` was scheduled (an activity task) or recorded (a local one)."""
    return [e.event_time.ToDatetime().replace(tzinfo=timezone.utc) for e in events if step_name(e) == activity]
