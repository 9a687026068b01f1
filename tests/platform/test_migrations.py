"""Migrations are the only way the schema changes: one head, upgrade/downgrade round trip, and
the tables in core/platform/tables.py match what the migrations build."""

from __future__ import annotations


from alembic import command
from alembic.script import ScriptDirectory

from core.platform.db import alembic_config


def test_a_single_head():
    script = ScriptDirectory.from_config(alembic_config("postgresql://unused/db"))
    assert len(script.get_heads()) == 1, f"merge the heads: {script.get_heads()}"



def test_upgrade_downgrade_round_trip_and_models_match(scratch_db):
    cfg = alembic_config(scratch_db)
    command.upgrade(cfg, "head")
    command.check(cfg)  # core/platform/tables.py agrees with the migrated schema
    command.downgrade(cfg, "base")
    command.upgrade(cfg, "head")
