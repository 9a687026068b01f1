"""Dashboard widgets: a tenant's layout, the catalog of kinds, and a widget's data."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class WidgetOut(BaseModel):
    id: str
    kind: str
    title: str
    config: dict[str, Any]
    position: int
    tenant_kind: str
    tenant_id: str
    updated_by: str
    updated_at: datetime


class Layout(BaseModel):
    tenant_kind: str = Field(description="platform | merchant (agent: reserved)")
    tenant_id: str
    can_edit: bool = Field(description="whether the caller may change this layout")
    data: list[WidgetOut]


class WidgetCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: str = Field(description="kpi | trend | breakdown | gauge | table | alerts | map (GET …/catalog)")
    title: str | None = Field(None, description="default: the kind's label")
    config: dict[str, Any] = Field(default_factory=dict, description="the kind's config (GET …/catalog for schemas)")


class WidgetPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    title: str | None = None
    config: dict[str, Any] | None = Field(None, description="replaces the whole config (validated as on create)")


class WidgetPut(BaseModel):
    model_config = ConfigDict(extra="forbid")

    title: str
    config: dict[str, Any]


class ReorderIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    ids: list[str] = Field(description="every widget id of your layout, once each, in the new order", max_length=100)


class CatalogEntry(BaseModel):
    kind: str
    label: str
    description: str
    data_source: str
    config_schema: dict[str, Any]


class WidgetChange(BaseModel):
    id: int
    widget_id: str | None
    change: str
    actor: str
    before: Any = None
    after: Any = None
    created_at: datetime
