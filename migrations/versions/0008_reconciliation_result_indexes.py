"""reconciliation results: the dashboards' left_id / right_id b-trees cover discrepancies only

Revision ID: 0008_recon_indexes
Revises: 0006_recon, 0007_dashboards

0007_dashboards indexed every result row's left_id and right_id (a transaction's reconciliation
status on its detail page). A provider-pair run writes a row per key, ~1M a day, nearly all
'matched', in hash order: two full b-trees fed in random order cost more than the matching itself.
Discrepancies (the rows a detail page is really about) keep a b-tree each; a matched row is found
through the transaction's candidate runs (BRIN on run_id), see core/transactions/queries.py.
"""
from __future__ import annotations

from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = "0008_recon_indexes"
down_revision: Union[str, Sequence[str], None] = ("0006_recon", "0007_dashboards")
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

DISCREPANCY = sa.text("category <> 'matched'")


def upgrade() -> None:
    op.drop_index("ix_reconciliation_results_left_id_dash", table_name="reconciliation_results")
    op.drop_index("ix_reconciliation_results_right_id_dash", table_name="reconciliation_results")
    op.create_index("ix_reconciliation_results_left_id_open", "reconciliation_results", ["left_id"],
                    postgresql_where=DISCREPANCY)
    op.create_index("ix_reconciliation_results_right_id_open", "reconciliation_results", ["right_id"],
                    postgresql_where=DISCREPANCY)


def downgrade() -> None:
    op.drop_index("ix_reconciliation_results_right_id_open", table_name="reconciliation_results")
    op.drop_index("ix_reconciliation_results_left_id_open", table_name="reconciliation_results")
    op.create_index("ix_reconciliation_results_left_id_dash", "reconciliation_results", ["left_id"])
    op.create_index("ix_reconciliation_results_right_id_dash", "reconciliation_results", ["right_id"])
