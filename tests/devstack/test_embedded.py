"""The embedded services start for real, keep their data, and never outlive their parent."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import httpx
import psutil
import pytest
import redis
from temporalio.api.operatorservice.v1 import ListSearchAttributesRequest
from temporalio.client import Client

from devstack.embedded import (
    EmbeddedPostgres,
    EmbeddedRedis,
    ManagedProcess,
    TemporalDevServer,
    free_port,
    port_is_free,
    wait_for_port,
)
from core.platform.names import SEARCH_ATTRIBUTES


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _wait_gone(pids: set[int], deadline_s: float) -> list[int]:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        alive = [p for p in pids if not _gone(p)]
        if not alive:
            return []
        time.sleep(0.05)
    return [p for p in pids if not _gone(p)]


@pytest.fixture
def pg_root() -> Iterator[Path]:
    """A private dir outside pytest's basetemp for PostgreSQL data.

    As root, PostgreSQL runs as a system user that must traverse the data dir's ancestors, and
    any pytest session starting elsewhere resets /tmp/pytest-of-<user> to 0700.
    """
    path = Path(tempfile.mkdtemp(prefix="payops-test-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_ports() -> None:
    port = free_port()
    assert port_is_free("127.0.0.1", port)
    proc = ManagedProcess.spawn(
        [sys.executable, "-m", "http.server", "--bind", "127.0.0.1", str(port)],
        log_file=Path(os.devnull),
        name="http",
    )
    try:
        wait_for_port("127.0.0.1", port, 10, process=proc)
        assert not port_is_free("127.0.0.1", port)
    finally:
        proc.stop(5)
    assert not proc.alive
    assert port_is_free("127.0.0.1", port)


async def test_postgres_keeps_data_across_restarts(tmp_path: Path, pg_root: Path) -> None:
    pg = EmbeddedPostgres(pg_root / "pg", fast=True, log_file=tmp_path / "pg.log")
    pg.start()
    try:
        url = pg.ensure_database("payops_test")
        assert pg.ensure_database("payops_test") == url  # idempotent
        assert url.startswith("postgresql://postgres@127.0.0.1:")
        conn = await asyncpg.connect(url)
        try:
            assert await conn.fetchval("SHOW max_connections") == "200"
            await conn.execute("CREATE TABLE kept (v text); INSERT INTO kept VALUES ('first run')")
        finally:
            await conn.close()
        first_pid = pg.process.pid
        pg.stop()
        assert _gone(first_pid)

        pg.start()  # PG_VERSION exists: no initdb, same data
        conn = await asyncpg.connect(pg.url_for("payops_test"))
        try:
            assert await conn.fetchval("SELECT v FROM kept") == "first run"
        finally:
            await conn.close()

        # A killed server leaves postmaster.pid behind; the next start must still succeed.
        os.kill(pg.process.pid, signal.SIGKILL)
        pg.process.stop(5)
        assert (pg.data_dir / "postmaster.pid").exists()
        pg.start()
        conn = await asyncpg.connect(pg.url_for("payops_test"))
        try:
            assert await conn.fetchval("SELECT v FROM kept") == "first run"
        finally:
            await conn.close()
    finally:
        pg.stop()


def test_redis_persists_across_restarts(tmp_path: Path) -> None:
    server = EmbeddedRedis(tmp_path / "redis", log_file=tmp_path / "redis.log").start()
    try:
        assert server.url.startswith("redis://127.0.0.1:")
        client = redis.Redis.from_url(server.url)
        client.set("payops:kept", "first run")
        assert client.get("payops:kept") == b"first run"
        client.close()
        server.stop()
        assert not server.process.alive

        server.start()
        client = redis.Redis.from_url(server.url)
        assert client.get("payops:kept") == b"first run"
        client.close()
    finally:
        server.stop()


async def _custom_search_attributes(address: str) -> set[str]:
    client = await Client.connect(address)
    resp = await client.operator_service.list_search_attributes(ListSearchAttributesRequest(namespace="default"))
    return set(resp.custom_attributes)


async def test_temporal_dev_server_registers_search_attributes(tmp_path: Path) -> None:
    server = TemporalDevServer(None, search_attributes=SEARCH_ATTRIBUTES, log_file=tmp_path / "temporal.log")
    server.start()
    try:
        assert set(SEARCH_ATTRIBUTES) <= await _custom_search_attributes(server.address)
        assert httpx.get(server.ui_url, timeout=5).status_code == 200
    finally:
        server.stop()
    assert not server.process.alive


async def test_temporal_restart_with_db_file_registers_again(tmp_path: Path) -> None:
    db = tmp_path / "temporal.db"
    for _ in range(2):  # the second start re-registers the same attributes on an existing db
        server = TemporalDevServer(db, ui_port=None, search_attributes=SEARCH_ATTRIBUTES).start()
        try:
            assert set(SEARCH_ATTRIBUTES) <= await _custom_search_attributes(server.address)
        finally:
            server.stop()
    assert db.exists()


PARENT = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from devstack.embedded import EmbeddedPostgres, EmbeddedRedis

    root = Path(sys.argv[1])
    r = EmbeddedRedis(root / "redis", persist=False).start()
    pg = EmbeddedPostgres(root / "pg", fast=True).start()
    print(r.process.pid, pg.process.pid, flush=True)
    time.sleep(600)  # parked until the test SIGKILLs us
    """
)


def test_killing_the_parent_leaves_no_child(pg_root: Path) -> None:
    parent = subprocess.Popen(
        [sys.executable, "-c", PARENT, str(pg_root)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parent.parent.parent,
    )
    try:
        assert parent.stdout is not None
        line = parent.stdout.readline()  # the parent exits on failure: no hang
        redis_pid, postmaster_pid = (int(x) for x in line.split())
        pids = {redis_pid, postmaster_pid} | {p.pid for p in psutil.Process(parent.pid).children(recursive=True)}
        assert not _gone(redis_pid) and not _gone(postmaster_pid)

        parent.send_signal(signal.SIGKILL)
        parent.wait(10)
        assert _wait_gone(pids, 20) == []
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
