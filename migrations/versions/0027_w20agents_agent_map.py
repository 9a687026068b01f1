"""agent map: mobile-money agents (cash-in/cash-out points), their float per currency, and the
transactions an agent made (issue 20, item 3)

Revision ID: 0027_w20agents_agent_map
Revises: 0026_w21portal_portal

`cube` + `earthdistance` (contrib, shipped with the embedded PostgreSQL and Debian's) give the
nearby search an index: a GiST index on earth_pos (ll_to_earth(lat, lon), a stored generated
column), searched with earth_box() and filtered on the great-circle distance (core/agents/store.py; docs/agents.md says why not PostGIS here).
"""
from __future__ import annotations

from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = "0027_w20agents_agent_map"
down_revision: Union[str, Sequence[str], None] = "0026_w21portal_portal"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


class _Cube(sa.types.UserDefinedType):
    cache_ok = True

    def get_col_spec(self, **kw) -> str:
        return "cube"


def upgrade() -> None:
    op.execute("CREATE EXTENSION IF NOT EXISTS cube")
    op.execute("CREATE EXTENSION IF NOT EXISTS earthdistance")
    op.create_table(
        "agents",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("lat", sa.Float(), nullable=False),
        sa.Column("lon", sa.Float(), nullable=False),
        sa.Column("operator", sa.String(length=64), nullable=True),
        sa.Column("merchant_id", sa.String(length=64), nullable=True),
        sa.Column("country", sa.String(length=2), nullable=False),
        sa.Column("city", sa.String(length=100), nullable=False),
        sa.Column("status", sa.String(length=16), server_default="active", nullable=False),
        # the point on earthdistance's sphere, computed once per write (ll_to_earth per row per
        # query, with its domain checks, was most of a search's time)
        sa.Column("earth_pos", _Cube(), sa.Computed("(ll_to_earth(lat, lon))::cube", persisted=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint("lat BETWEEN -90 AND 90", name="ck_agents_lat"),
        sa.CheckConstraint("lon BETWEEN -180 AND 180", name="ck_agents_lon"),
        sa.CheckConstraint("status in ('active','suspended','closed')", name="ck_agents_status"),
        sa.CheckConstraint("operator IS NOT NULL OR merchant_id IS NOT NULL", name="ck_agents_owner"),
        sa.ForeignKeyConstraint(["merchant_id"], ["merchants.id"], name="fk_agents_merchant_id_merchants"),
        sa.PrimaryKeyConstraint("id", name="pk_agents"),
    )
    op.create_index("ix_agents_merchant_id", "agents", ["merchant_id"])
    op.create_index("ix_agents_earth", "agents", ["earth_pos"], postgresql_using="gist")
    op.create_index("ix_agents_lat_lon", "agents", ["lat", "lon"])
    op.create_table(
        "agent_floats",
        sa.Column("agent_id", sa.String(length=64), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False),
        sa.Column("low_threshold_minor", sa.BigInteger(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint("amount_minor >= 0", name="ck_agent_floats_amount"),
        sa.CheckConstraint("low_threshold_minor IS NULL OR low_threshold_minor >= 0", name="ck_agent_floats_threshold"),
        sa.ForeignKeyConstraint(["agent_id"], ["agents.id"], name="fk_agent_floats_agent_id_agents",
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("agent_id", "currency", name="pk_agent_floats"),
    )
    op.add_column("transactions", sa.Column("agent_id", sa.String(length=64), nullable=True))
    op.create_index("ix_transactions_agent_occurred", "transactions", ["agent_id", "occurred_at"])


def downgrade() -> None:
    op.drop_index("ix_transactions_agent_occurred", table_name="transactions")
    op.drop_column("transactions", "agent_id")
    op.drop_table("agent_floats")
    op.drop_table("agents")
    op.execute("DROP EXTENSION IF EXISTS earthdistance")
    op.execute("DROP EXTENSION IF EXISTS cube")
