"""Database engine, sessions and migrations."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from core.platform.settings import to_asyncpg_url

REPO_ROOT = Path(__file__).resolve().parents[2]


def create_engine(
    database_url: str, *, pool_size: int = 10, max_overflow: int = 20, pre_ping: bool = True
) -> AsyncEngine:
    """`pre_ping` tests each connection on checkout (BEGIN; ping; ROLLBACK: three round trips)."""
    return create_async_engine(
        to_asyncpg_url(database_url),
        pool_size=pool_size,
        max_overflow=max_overflow,
        pool_pre_ping=pre_ping,
    )


def create_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


@asynccontextmanager
async def transaction(sessionmaker: async_sessionmaker[AsyncSession]) -> AsyncIterator[AsyncSession]:
    """One session, one transaction: commit on success, roll back on error."""
    async with sessionmaker() as session:
        async with session.begin():
            yield session


async def driver_connection(session: AsyncSession):
    """The session's asyncpg connection, inside the session's transaction.

    SQLAlchemy's asyncpg adapter sends BEGIN lazily, with its own first statement. SQL sent
    straight to the driver before that runs in autocommit, one statement at a time: no atomicity,
    `pg_advisory_xact_lock` released at once, `SET LOCAL` ignored. One statement through
    SQLAlchemy opens the transaction first."""
    conn = await session.connection()
    raw = (await conn.get_raw_connection()).driver_connection
    if not raw.is_in_transaction():
        await conn.exec_driver_sql("SELECT 1")
    return raw


async def ping(session: AsyncSession) -> bool:
    """PostgreSQL answers a trivial query on this session."""
    return (await session.execute(text("SELECT 1"))).scalar_one() == 1


async def server_version(engine: AsyncEngine) -> str:
    """PostgreSQL's version, on a fresh connection of the engine (readiness)."""
    async with engine.connect() as conn:
        return (await conn.execute(text("SHOW server_version"))).scalar_one()


def alembic_config(database_url: str):
    from alembic.config import Config  # why: alembic loads only where migrations run

    cfg = Config(str(REPO_ROOT / "alembic.ini"))
    cfg.set_main_option("script_location", str(REPO_ROOT / "migrations"))
    cfg.attributes["database_url"] = database_url
    cfg.attributes["configure_logging"] = False
    return cfg


def run_migrations(database_url: str, revision: str = "heads") -> None:
    """Apply Alembic migrations up to `revision` (sync; call from a thread inside an event loop)."""
    from alembic import command  # why: alembic loads only where migrations run

    command.upgrade(alembic_config(database_url), revision)
