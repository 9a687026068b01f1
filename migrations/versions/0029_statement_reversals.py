"""bank statement lines remember whether the bank booked them as a reversal

Revision ID: 0029_statement_reversals
Revises: 0028_view_as_end

camt.053 `Ntry/RvslInd` and MT940 field 61's `RD`/`RC` mark an entry that undoes an earlier one (a
payout's debit returned as a credit). `bank_statement_lines.reversal` keeps the mark, so matching
never takes a reversal for a payment: a reversal naming a payout is a status_mismatch, and the
payout is not reconciled (core/reconciliation/store.py STATEMENT_REVERSALS).
"""
from __future__ import annotations

from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = "0029_statement_reversals"
down_revision: Union[str, Sequence[str], None] = "0028_view_as_end"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.add_column("bank_statement_lines",
                  sa.Column("reversal", sa.Boolean(), nullable=False, server_default=sa.false()))


def downgrade() -> None:
    op.drop_column("bank_statement_lines", "reversal")
