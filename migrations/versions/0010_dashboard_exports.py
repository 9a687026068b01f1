"""Dashboard export jobs (issue 8).

Revision ID: 0010_exports
Revises: 0009_merge
"""
from __future__ import annotations

from typing import Sequence, Union

revision: str = "0010_exports"
down_revision: Union[str, Sequence[str], None] = "0009_merge"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
