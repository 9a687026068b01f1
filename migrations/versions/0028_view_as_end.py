"""view-as sessions can be ended before they expire

Revision ID: 0028_view_as_end
Revises: 0027_w20agents_agent_map

`ended_at` / `ended_by` on `view_as_sessions`: an ops user (or an ops_admin) ends a session early
(POST /api/v1/ops/view-as/{id}/end); from then on its token is refused although it has not
expired (api/deps.py looks the session up for every request made under a view-as token).
"""
from __future__ import annotations

from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = "0028_view_as_end"
down_revision: Union[str, Sequence[str], None] = "0027_w20agents_agent_map"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.add_column("view_as_sessions", sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("view_as_sessions", sa.Column("ended_by", sa.String(128), nullable=True))


def downgrade() -> None:
    op.drop_column("view_as_sessions", "ended_by")
    op.drop_column("view_as_sessions", "ended_at")
