"""Reconciliation storage changes (issue 7).

Revision ID: 0011_recon_partitions
Revises: 0010_exports
"""
from __future__ import annotations

from typing import Sequence, Union

revision: str = "0011_recon_partitions"
down_revision: Union[str, Sequence[str], None] = "0010_exports"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
