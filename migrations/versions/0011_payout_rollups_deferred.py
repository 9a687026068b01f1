"""Payout rollups counted at commit (issue 3: payout throughput).

Revision ID: 0011_rollups_deferred
Revises: 0010_exports

The payouts' dashboard rollups (`payout_rollups_hourly`/`_daily`, one row per hour or day,
merchant, currency, rail and status) were kept by row triggers that ran with each INSERT or
UPDATE of a payout: the rollup rows a transition touches were then locked from that statement to
the commit. Every payout of a merchant in the same hour moves through the same few rows, so the
payout workflow's activities queued on them (the bench showed most backends waiting on
`UPDATE payouts` / `INSERT INTO payouts` for one another's transactions).

The same function now runs as deferred constraint triggers: at COMMIT, with each event's own OLD
and NEW rows, so the counts are exactly what they were, and a rollup row is locked only for the
commit itself.
"""
from __future__ import annotations

from typing import Sequence, Union

from alembic import op

revision: str = "0011_rollups_deferred"
down_revision: Union[str, Sequence[str], None] = "0010_exports"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

UPDATE_WHEN = ("WHEN (OLD.status IS DISTINCT FROM NEW.status OR OLD.rail IS DISTINCT FROM NEW.rail "
               "OR OLD.amount_minor <> NEW.amount_minor OR OLD.fee_minor <> NEW.fee_minor "
               "OR OLD.currency <> NEW.currency) ")


def _triggers(deferred: bool) -> list[str]:
    kind = "CONSTRAINT TRIGGER" if deferred else "TRIGGER"
    timing = " DEFERRABLE INITIALLY DEFERRED" if deferred else ""
    return [
        f"CREATE {kind} payouts_rollup_insert AFTER INSERT ON payouts{timing} "
        "FOR EACH ROW EXECUTE FUNCTION dashboard_rollup_payout()",
        f"CREATE {kind} payouts_rollup_delete AFTER DELETE ON payouts{timing} "
        "FOR EACH ROW EXECUTE FUNCTION dashboard_rollup_payout()",
        f"CREATE {kind} payouts_rollup_update AFTER UPDATE ON payouts{timing} FOR EACH ROW "
        f"{UPDATE_WHEN}EXECUTE FUNCTION dashboard_rollup_payout()",
    ]


def _replace(deferred: bool) -> None:
    for name in ("payouts_rollup_insert", "payouts_rollup_delete", "payouts_rollup_update"):
        op.execute(f"DROP TRIGGER IF EXISTS {name} ON payouts")
    for statement in _triggers(deferred):
        op.execute(statement)


def upgrade() -> None:
    _replace(deferred=True)


def downgrade() -> None:
    _replace(deferred=False)
