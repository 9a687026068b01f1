"""The merchant portal's representations: activity feed, view-as sessions, provider accounts."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

ActivityKind = Literal["payment", "payout", "settlement", "webhook", "ops"]


class ActivityEvent(BaseModel):
    id: str = Field(description="unique per event: a kind prefix and the source row's id")
    at: datetime
    kind: ActivityKind
    event: str = Field(description="payment: its status; payout/settlement: the new status; webhook: delivered, "
                                   "failing or disabled; ops: <action_type>.<event>, view_as.started or "
                                   "view_as.ended")
    merchant_id: str | None
    ref: str | None = Field(description="the transaction's provider id, the payout, the webhook event, the ops "
                                        "action or the view-as session")
    amount_minor: int | None
    currency: str | None
    detail: dict[str, Any]


class ActivityPage(BaseModel):
    data: list[ActivityEvent]
    next_cursor: str | None = Field(description="pass as `cursor` for the next (older) page; null on the last")


class ViewAsStart(BaseModel):
    merchant_id: str = Field(min_length=1, max_length=64)
    reason: str = Field(min_length=3, max_length=500, description="why you look at this merchant's portal (audited)")


class ViewAsSession(BaseModel):
    id: str
    merchant_id: str
    actor: str = Field(description="the ops user (the real actor of every request under the session)")
    actor_roles: list[str]
    reason: str
    expires_at: datetime
    created_at: datetime
    ended_at: datetime | None = Field(default=None, description="set when the session was ended before it expired: "
                                                                "its token is refused from then")
    ended_by: str | None = Field(default=None, description="who ended it (the ops user, even through the session's "
                                                           "own token)")


class ViewAsGranted(ViewAsSession):
    merchant_name: str | None
    token: str = Field(description="bearer token of the session: a read-only merchant_viewer of the merchant")


class ViewAsSessionList(BaseModel):
    data: list[ViewAsSession]


class ProviderAccountPut(BaseModel):
    merchant_id: str = Field(min_length=1, max_length=64)


class ProviderAccount(BaseModel):
    source: str
    project: str
    merchant_id: str
    created_by: str
    created_at: datetime
    reassigned: int | None = Field(default=None, description="stored transactions whose merchant this changed")


class ProviderAccountList(BaseModel):
    data: list[ProviderAccount]
