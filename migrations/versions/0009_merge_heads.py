"""Merge the branches that issues 5, 6, 10, 4 and 7/8 grew in parallel from 0001.

Revision ID: 0009_merge
Revises: 0002_ops_audit, 0003_sync, 0004_webhooks, 0005_rails, 0008_recon_indexes
"""
from __future__ import annotations

from typing import Sequence, Union

revision: str = "0009_merge"
down_revision: Union[str, Sequence[str], None] = (
    "0002_ops_audit",
    "0003_sync",
    "0004_webhooks",
    "0005_rails",
    "0008_recon_indexes",
)
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
