"""Rails scheduling changes (issue 4).

Revision ID: 0012_rails
Revises: 0011_recon_partitions
"""
from __future__ import annotations

from typing import Sequence, Union

revision: str = "0012_rails"
down_revision: Union[str, Sequence[str], None] = "0011_recon_partitions"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
