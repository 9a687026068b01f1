"""Alembic environment: async engine on asyncpg, URL from the caller or PAYOPS_DATABASE_URL."""

from __future__ import annotations

import asyncio
from logging.config import fileConfig

from alembic import context
from sqlalchemy.ext.asyncio import create_async_engine

from core.platform.settings import get_settings, to_asyncpg_url
from core.platform.tables import metadata

config = context.config
if config.config_file_name is not None and config.attributes.get("configure_logging", True):
    fileConfig(config.config_file_name, disable_existing_loggers=False)


def _url() -> str:
    url = config.attributes.get("database_url") or get_settings().database_url
    if not url:
        raise RuntimeError("no database URL: set PAYOPS_DATABASE_URL")
    return to_asyncpg_url(url)


def _include_object(obj, name, type_, reflected, compare_to) -> bool:
    """Partitions of `transactions` are made by ensure_transaction_partitions(), not by models."""
    table = obj.table.name if type_ == "index" else name
    if reflected and table and table.startswith("transactions_") and table != "transactions":
        return False
    return True


def run_migrations_offline() -> None:
    context.configure(url=_url(), target_metadata=metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def _run_sync(connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        compare_type=True,
        include_object=_include_object,
    )
    with context.begin_transaction():
        context.run_migrations()


async def run_migrations_online() -> None:
    engine = create_async_engine(_url())
    async with engine.connect() as connection:
        await connection.run_sync(_run_sync)
    await engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    asyncio.run(run_migrations_online())
