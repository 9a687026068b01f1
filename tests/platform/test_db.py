"""SQL sent straight to asyncpg belongs to the session's transaction."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from core.platform.db import driver_connection


async def test_driver_connection_runs_inside_the_sessions_transaction(sessionmaker):
    """SQLAlchemy's asyncpg adapter begins lazily: without driver_connection's BEGIN, the raw
    statements below would each autocommit and survive the rollback (the sync upsert's keys
    without their transactions, a released advisory lock, ignored SET LOCALs)."""
    with pytest.raises(RuntimeError):
        async with sessionmaker() as session, session.begin():
            raw = await driver_connection(session)
            assert raw.is_in_transaction()
            await raw.execute("CREATE TABLE raw_sql_probe (id int)")
            await raw.execute("SET LOCAL work_mem = '77MB'")
            assert await raw.fetchval("SHOW work_mem") == "77MB"
            raise RuntimeError("roll back")
    async with sessionmaker() as session:
        assert await session.scalar(text("SELECT to_regclass('raw_sql_probe')")) is None
