"""LEAN_PATCH (issue 19): a new payout's history asks one patch, runs its database steps as local
activities and writes PayoutStatus when the payout rests, with the same money outcome and the same
audit trail as before. Ops filter on PayoutStatus in the Temporal UI and CLI, so a payout that waits
at the submission gate shows `routed` there, and a settled one `settled`."""

from __future__ import annotations

import asyncio
import json

from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowHandle

from core.payouts.models import ControlsChanged
from core.platform.names import search_attribute_keys
from tests.temporal_history import LOCAL_ACTIVITY_MARKER, step_name
from tests.factories import create_merchant, create_payout_row
from tests.payouts.test_payout_workflow import (
    FUNDS, _control, assert_ledger_ok, balances, events_of, start, start_held_at_the_gate,
)
from workflows.payout import LEAN_PATCH

SA = search_attribute_keys()


async def history_facts(handle: WorkflowHandle) -> dict:
    """What a payout's history holds: the patch markers, local activities, activity tasks and the
    PayoutStatus values upserted, in order."""
    history = await handle.fetch_history()
    patches, local, activities, statuses = [], [], [], []
    for event in history.events:
        if event.event_type == EventType.EVENT_TYPE_MARKER_RECORDED:
            attrs = event.marker_recorded_event_attributes
            if attrs.marker_name == "core_patch":
                patches.append(json.loads(attrs.details["patch-data"].payloads[0].data)["id"])
            elif attrs.marker_name == LOCAL_ACTIVITY_MARKER:
                local.append(step_name(event))
        elif event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            activities.append(event.activity_task_scheduled_event_attributes.activity_type.name)
        elif event.event_type == EventType.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES:
            fields = event.upsert_workflow_search_attributes_event_attributes.search_attributes.indexed_fields
            if "PayoutStatus" in fields:
                statuses.append(json.loads(fields["PayoutStatus"].data))
    return {"patches": patches, "local": local, "activities": activities, "statuses": statuses,
            "events": len(history.events)}


async def search_status(handle: WorkflowHandle) -> str | None:
    desc = await handle.describe()
    return desc.typed_search_attributes.get(SA["PayoutStatus"])


async def test_lean_payout_settles_with_one_patch_local_db_steps_and_resting_statuses(
        temporal_client, worker, settings, sessionmaker, bank):
    merchant = await create_merchant(sessionmaker, funded_minor=FUNDS)
    params = await create_payout_row(sessionmaker, settings, merchant_id=merchant, amount_minor=12_345)
    handle = await start(temporal_client, settings, params)
    assert (await handle.result()).status == "settled"

    facts = await history_facts(handle)
    assert facts["patches"] == [LEAN_PATCH]
    assert facts["local"][:3] == ["place_payout_hold", "route_payout_by_rules", "check_submission_gate"]
    assert "settle_payout" in facts["local"]
    assert not {"place_payout_hold", "route_payout_by_rules", "check_submission_gate",
                "settle_payout"} & set(facts["activities"])
    assert facts["activities"][0] == "submit_payout_to_connector"
    # held and routed are passed through inside one workflow task: never written
    assert "held" not in facts["statuses"] and "routed" not in facts["statuses"]
    assert facts["statuses"][:2] == ["submitting", "submitted"] and facts["statuses"][-1] == "settled"
    assert await search_status(handle) == "settled"

    # the same money and the same audit trail as an activity-per-step payout
    bal = (await balances(sessionmaker, merchant))["EUR"]
    assert bal.available_minor == FUNDS - 12_345 - params.fee_minor and bal.held_minor == 0
    assert bank.payment(params.payout_id)["accepted_count"] == 1
    assert await events_of(sessionmaker, params.payout_id) == ["held", "routed", "submitting", "submitted", "settled"]
    await assert_ledger_ok(sessionmaker)


async def test_lean_payout_waiting_at_the_gate_shows_routed_to_ops(temporal_client, worker, settings, sessionmaker,
                                                                    bank):
    merchant, params, handle, _ = await start_held_at_the_gate(temporal_client, settings, sessionmaker)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10
    while await search_status(handle) != "routed":  # written when it rests, in the same task
        assert loop.time() < deadline, await search_status(handle)
        await asyncio.sleep(0.05)
    assert bank.payment(params.payout_id) is None

    await _control(sessionmaker, "merchant_freeze", merchant, active=False)
    await handle.signal("controls_changed", ControlsChanged(reason="unfrozen"))
    assert (await handle.result()).status == "settled"
    facts = await history_facts(handle)
    assert facts["statuses"][0] == "routed" and facts["statuses"][-1] == "settled"
    assert facts["local"].count("check_submission_gate") == 2
    assert await search_status(handle) == "settled"


async def test_lean_payout_refused_for_funds_ends_rejected_in_search(temporal_client, worker, settings, sessionmaker,
                                                                      bank):
    merchant = await create_merchant(sessionmaker, funded_minor=100)
    params = await create_payout_row(sessionmaker, settings, merchant_id=merchant, amount_minor=50_000)
    handle = await start(temporal_client, settings, params)
    assert (await handle.result()).status == "rejected"
    assert (await history_facts(handle))["statuses"] == ["rejected"]
    assert await search_status(handle) == "rejected"
    assert bank.payment(params.payout_id) is None
