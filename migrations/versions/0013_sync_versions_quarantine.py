"""Provider syncs never go back in time and never stall on one record (issue 16).

Revision ID: 0013_sync_versions_quarantine
Revises: 0011_rollups_deferred

- `transactions.source_version`: the provider's own version of the record (Vima's
  `operation_update_id`), so an upsert can refuse to replace a newer version with an older one
  (a late page). Records without a version compare `source_updated_at`.
- `transactions.payer_name` is text: a long name is kept whole, never truncated at 200.
- `sync_quarantine` gets an index for listing the newest quarantined records per source.
"""
from __future__ import annotations

from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = "0013_sync_versions_quarantine"
down_revision: Union[str, Sequence[str], None] = "0012_bank_notifications"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.add_column("transactions", sa.Column("source_version", sa.BigInteger(), nullable=True))
    # varchar(200) -> text is binary coercible: no table rewrite
    op.alter_column("transactions", "payer_name", type_=sa.Text(), existing_type=sa.String(length=200),
                    existing_nullable=True)
    op.create_index("ix_sync_quarantine_source_created", "sync_quarantine", ["source", "created_at"])


def downgrade() -> None:
    op.drop_index("ix_sync_quarantine_source_created", table_name="sync_quarantine")
    op.execute("UPDATE transactions SET payer_name = left(payer_name, 200) WHERE length(payer_name) > 200")
    op.alter_column("transactions", "payer_name", type_=sa.String(length=200), existing_type=sa.Text(),
                    existing_nullable=True)
    op.drop_column("transactions", "source_version")
