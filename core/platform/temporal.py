"""The one Temporal client factory: pydantic data converter + encrypting codec, from settings."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import timedelta
from typing import TypeVar

from temporalio.client import Client, Schedule, ScheduleAlreadyRunningError, ScheduleUpdate, ScheduleUpdateInput
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.converter import DataConverter
from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest, ListSearchAttributesRequest
from temporalio.service import RPCError, RPCStatusCode, TLSConfig

from core.platform.codec import EncryptionCodec
from core.platform.names import SEARCH_ATTRIBUTES
from core.platform.settings import Settings

T = TypeVar("T")


def data_converter(settings: Settings) -> DataConverter:
    return dataclasses.replace(
        pydantic_data_converter, payload_codec=EncryptionCodec.from_spec(settings.codec_keys)
    )


async def connect_temporal(settings: Settings, *, address: str | None = None) -> Client:
    return await Client.connect(
        address or settings.temporal_address,
        namespace=settings.temporal_namespace,
        data_converter=data_converter(settings),
        tls=TLSConfig() if settings.temporal_tls else False,
        api_key=settings.temporal_api_key,
    )


def workflow_ui_url(settings: Settings, workflow_id: str) -> str:
    base = settings.temporal_ui_url.rstrip("/")
    return f"{base}/namespaces/{settings.temporal_namespace}/workflows/{workflow_id}"


async def register_search_attributes(client: Client, namespace: str | None = None) -> list[str]:
    """Register the custom search attributes payops uses; already-registered ones are skipped."""
    namespace = namespace or client.namespace
    types = {"Keyword": IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD, "Int": IndexedValueType.INDEXED_VALUE_TYPE_INT}
    try:
        existing = set(
            (await client.operator_service.list_search_attributes(
                ListSearchAttributesRequest(namespace=namespace)
            )).custom_attributes
        )
    except RPCError as exc:  # the time-skipping test server can add but not list them
        if exc.status != RPCStatusCode.UNIMPLEMENTED:
            raise
        existing = set()
    missing = {name: types[kind] for name, kind in SEARCH_ATTRIBUTES.items() if name not in existing}
    if missing:
        await client.operator_service.add_search_attributes(
            AddSearchAttributesRequest(namespace=namespace, search_attributes=missing)
        )
    return sorted(missing)


async def upsert_schedule(client: Client, schedule_id: str, desired: Schedule) -> None:
    """Create the schedule, or update it in place keeping its paused/running state."""
    try:
        await client.create_schedule(schedule_id, desired)
    except ScheduleAlreadyRunningError:
        def update(current: ScheduleUpdateInput) -> ScheduleUpdate:
            desired.state = current.description.schedule.state
            return ScheduleUpdate(schedule=desired)

        await client.get_schedule_handle(schedule_id).update(update)


async def query_live_state(
    temporal: Client | None, workflow_id: str, result_type: type[T], *, what: str, timeout_seconds: float = 3.0,
) -> tuple[T | None, str | None]:
    """The workflow's `state` query, or (None, why) when it cannot answer: no Temporal, no such
    workflow, no worker in time, another failure. `what` names it in the why ("the payout workflow")."""
    if temporal is None:
        return None, "Temporal is not reachable"
    handle = temporal.get_workflow_handle(workflow_id)
    try:
        state = await asyncio.wait_for(
            handle.query("state", result_type=result_type, rpc_timeout=timedelta(seconds=timeout_seconds)),
            timeout_seconds + 1,
        )
        return state, None
    except asyncio.TimeoutError:
        return None, f"{what} did not answer the state query in time (is a worker running?)"
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            return None, f"{what} does not exist (yet)"
        return None, f"state query failed: {exc.message}"
    except Exception as exc:  # noqa: BLE001 — the caller's stored row is still worth returning
        return None, f"state query failed: {exc}"


async def describe_status(temporal: Client | None, workflow_id: str, *, timeout_seconds: float = 3.0) -> str | None:
    """Temporal's execution status of the workflow's latest run (RUNNING, COMPLETED, TERMINATED,
    CANCELED, FAILED, TIMED_OUT, CONTINUED_AS_NEW), from a describe; None when there is no such
    workflow or Temporal does not answer in time (a read that must not fail because of it)."""
    if temporal is None:
        return None
    try:
        desc = await asyncio.wait_for(
            temporal.get_workflow_handle(workflow_id).describe(rpc_timeout=timedelta(seconds=timeout_seconds)),
            timeout_seconds + 1,
        )
    except Exception:  # noqa: BLE001 — NOT_FOUND, unreachable, timeout: the status is unknown
        return None
    return desc.status.name if desc.status is not None else None
