"""The one Temporal client factory: pydantic data converter + encrypting codec, from settings."""

from __future__ import annotations

import dataclasses

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.converter import DataConverter
from temporalio.service import TLSConfig

from core.codec import EncryptionCodec
from core.settings import Settings


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
    from temporalio.api.enums.v1 import IndexedValueType
    from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest, ListSearchAttributesRequest

    from core.names import SEARCH_ATTRIBUTES

    from temporalio.service import RPCError, RPCStatusCode

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
