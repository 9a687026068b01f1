"""`payops up` end to end, the way a user runs it: a real subprocess with its own data dir.

It must come up (PostgreSQL, Redis, Temporal reported up by /ready, the Temporal UI answering),
stop on Ctrl-C without leaving a process behind, leave nothing behind even when SIGKILLed,
and find its data again on the next start.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import httpx
import psutil
import pytest
import redis
from temporalio.client import Client, WorkflowExecutionStatus

from devstack.embedded import free_port, wait_for_port

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parent.parent.parent
UP = [sys.executable, "-c", "from cli.main import app; app()", "up"]
STATUS = [sys.executable, "-c", "from cli.main import app; app()", "status"]
START_DEADLINE_S = 120.0
STOP_DEADLINE_S = 90.0


def _stack_env(data_dir: Path, api_port: int, temporal_port: int, ui_port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PAYOPS_")}
    env.update(
        PAYOPS_DATA_DIR=str(data_dir),
        PAYOPS_API_PORT=str(api_port),
        PAYOPS_TEMPORAL_ADDRESS=f"127.0.0.1:{temporal_port}",
        PAYOPS_TEMPORAL_UI_PORT=str(ui_port),
        PYTHONUNBUFFERED="1",
    )
    return env


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _wait_all_gone(pids: set[int], deadline_s: float) -> set[int]:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if all(_gone(p) for p in pids):
            return set()
        time.sleep(0.1)
    return {p for p in pids if not _gone(p)}


@dataclass
class RunningStack:
    proc: subprocess.Popen[bytes]
    output: Path
    data_dir: Path
    api_url: str
    ui_port: int
    state: dict
    startup_s: float

    def text(self) -> str:
        return self.output.read_text(errors="replace")

    def pids(self) -> set[int]:
        """The `payops up` process, every service pid it recorded, and all their descendants."""
        pids = {self.proc.pid}
        pids |= {s["pid"] for s in self.state["services"].values() if s.get("pid")}
        with contextlib.suppress(psutil.NoSuchProcess):
            pids |= {p.pid for p in psutil.Process(self.proc.pid).children(recursive=True)}
        return pids

    def service_url(self, name: str) -> str:
        return self.state["services"][name]["url"]


def _state_of(data_dir: Path, pid: int) -> dict | None:
    """stack.json once the `payops up` with this pid has written it."""
    try:
        state = json.loads((data_dir / "stack.json").read_text())
    except (OSError, ValueError):
        return None
    return state if state.get("pid") == pid else None


@contextlib.contextmanager
def payops_up(env: dict[str, str], workdir: Path, tag: str) -> Iterator[RunningStack]:
    data_dir = Path(env["PAYOPS_DATA_DIR"])
    api_url = f"http://127.0.0.1:{env['PAYOPS_API_PORT']}"
    output = workdir / f"up-{tag}.out"
    started = time.monotonic()
    with open(output, "wb") as out:
        proc = subprocess.Popen(UP, env=env, cwd=workdir, stdout=out, stderr=subprocess.STDOUT)
    stack: RunningStack | None = None
    try:
        deadline = time.monotonic() + START_DEADLINE_S
        body: dict = {}
        while True:
            assert proc.poll() is None, f"payops up exited {proc.returncode}:\n{output.read_text()}"
            try:
                resp = httpx.get(f"{api_url}/ready", timeout=5)
                body = resp.json() if resp.headers.get("content-type", "").startswith("application/") else {}
                if resp.status_code == 200 and _state_of(data_dir, proc.pid):
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, f"not ready in {START_DEADLINE_S}s ({body}):\n{output.read_text()}"
            time.sleep(0.2)
        startup_s = time.monotonic() - started
        for name in ("postgres", "redis", "temporal"):
            assert body["checks"][name]["status"] == "up", body
        state = _state_of(data_dir, proc.pid)
        stack = RunningStack(proc, output, data_dir, api_url, int(env["PAYOPS_TEMPORAL_UI_PORT"]), state, startup_s)
        yield stack
    finally:
        if proc.poll() is None:  # the test failed midway: never leave a stack running
            leftovers = stack.pids() if stack else {proc.pid}
            proc.kill()
            proc.wait(30)
            for pid in _wait_all_gone(leftovers, 20):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)


@pytest.fixture
def stack_dir() -> Iterator[Path]:
    """A private dir outside pytest's basetemp for the data dir.

    As root, PostgreSQL runs as a system user that must traverse the data dir's ancestors, and
    any pytest session starting elsewhere resets /tmp/pytest-of-<user> to 0700 (harmless for a
    clean stop, which restores access first, but a SIGKILLed stack would then need recovery).
    """
    path = Path(tempfile.mkdtemp(prefix="payops-stack-test-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _status(env: dict[str, str], workdir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(STATUS, env=env, cwd=workdir, capture_output=True, text=True, timeout=60)


async def test_up_stop_restart_keeps_data_and_leaves_no_process(stack_dir: Path) -> None:
    tmp_path = stack_dir
    env = _stack_env(tmp_path / ".payops", free_port(), free_port(), free_port())
    marker = f"marker-{uuid.uuid4().hex[:8]}"
    workflow_id = f"stack-test-{marker}"

    # 1. cold start; write into every store; a second `payops up` is refused; Ctrl-C stops all
    with payops_up(env, tmp_path, "cold") as stack:
        cold_s = stack.startup_s
        assert httpx.get(f"http://127.0.0.1:{stack.ui_port}/", timeout=10).status_code == 200
        text = stack.text()
        for expected in ("/docs", "/metrics", f"127.0.0.1:{stack.ui_port}", "postgresql://", "redis://"):
            assert expected in text, text

        status = _status(env, tmp_path)
        assert status.returncode == 0, status.stdout + status.stderr
        assert "postgres" in status.stdout and "temporal" in status.stdout

        second = subprocess.run(UP, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60)
        assert second.returncode == 2 and "already running" in second.stdout, second.stdout + second.stderr

        conn = await asyncpg.connect(stack.service_url("postgres"))
        try:
            await conn.execute("CREATE TABLE stack_test_marker (v text)")
            await conn.execute("INSERT INTO stack_test_marker VALUES ($1)", marker)
        finally:
            await conn.close()
        r = redis.Redis.from_url(stack.service_url("redis"))
        r.set("stack-test-marker", marker)
        r.close()
        client = await Client.connect(stack.service_url("temporal"))
        # No worker polls this queue: the workflow simply stays open across restarts.
        await client.start_workflow("StackTestMarker", id=workflow_id, task_queue=f"nobody-{marker}")

        pids = stack.pids()
        assert len(pids) >= 7  # up + postgres, redis, temporal, bank, worker, api (+ pg children)
        stack.proc.send_signal(signal.SIGINT)
        assert stack.proc.wait(STOP_DEADLINE_S) == 0, stack.text()
        assert _wait_all_gone(pids, 20) == set(), stack.text()
        assert not (stack.data_dir / "stack.json").exists()
        assert not (stack.data_dir / "payops.lock").exists()
        assert _status(env, tmp_path).returncode == 3

    # 2. warm start finds everything; SIGKILL of `payops up` still leaves no process behind
    with payops_up(env, tmp_path, "warm") as stack:
        warm_s = stack.startup_s
        await _assert_data_kept(stack, marker, workflow_id)
        pids = stack.pids()
        stack.proc.send_signal(signal.SIGKILL)
        stack.proc.wait(10)
        assert _wait_all_gone(pids, 30) == set(), stack.text()
    assert _status(env, tmp_path).returncode == 3  # stack.json left by the killed run is stale

    # 3. a start after a SIGKILL takes over the stale lock and still has the data; SIGTERM stops it
    with payops_up(env, tmp_path, "after-kill") as stack:
        await _assert_data_kept(stack, marker, workflow_id)
        pids = stack.pids()
        stack.proc.send_signal(signal.SIGTERM)
        assert stack.proc.wait(STOP_DEADLINE_S) == 0, stack.text()
        assert _wait_all_gone(pids, 20) == set(), stack.text()

    print(f"\npayops up: cold start {cold_s:.1f}s, warm start {warm_s:.1f}s")


async def _assert_data_kept(stack: RunningStack, marker: str, workflow_id: str) -> None:
    conn = await asyncpg.connect(stack.service_url("postgres"))
    try:
        assert await conn.fetchval("SELECT v FROM stack_test_marker") == marker
    finally:
        await conn.close()
    r = redis.Redis.from_url(stack.service_url("redis"))
    assert r.get("stack-test-marker") == marker.encode()
    r.close()
    client = await Client.connect(stack.service_url("temporal"))
    desc = await client.get_workflow_handle(workflow_id).describe()
    assert desc.status == WorkflowExecutionStatus.RUNNING


@pytest.mark.parametrize("setting", ["PAYOPS_API_PORT", "PAYOPS_TEMPORAL_ADDRESS", "PAYOPS_TEMPORAL_UI_PORT"])
def test_taken_port_exits_2_and_starts_nothing(tmp_path: Path, setting: str) -> None:
    env = _stack_env(tmp_path / ".payops", free_port(), free_port(), free_port())
    port = int(env[setting].rpartition(":")[2])
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", port))
        blocker.listen()
        before = {p.pid for p in psutil.process_iter()}
        result = subprocess.run(UP, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2, result.stdout + result.stderr
    assert f"port {port} is taken ({setting})" in result.stdout
    assert not (tmp_path / ".payops" / "stack.json").exists()
    assert not (tmp_path / ".payops" / "logs").exists()  # nothing was started
    started = [
        p
        for p in psutil.process_iter(["pid", "cmdline"])
        if p.info["pid"] not in before and str(tmp_path) in " ".join(p.info["cmdline"] or [])
    ]
    assert started == []


def _pid_of(data_dir: Path, up_pid: int, service: str) -> int | None:
    state = _state_of(data_dir, up_pid)
    return state["services"][service]["pid"] if state else None


def _restarted(stack: RunningStack, service: str, old_pid: int) -> int | None:
    """The new pid of `service` once `payops up` restarted it and recorded it in stack.json."""
    pid = _pid_of(stack.data_dir, stack.proc.pid, service)
    if pid and pid != old_pid and psutil.pid_exists(pid) and not _gone(pid) and f"{service} restarted" in stack.text():
        return pid
    return None


async def test_a_killed_worker_and_bank_are_restarted_and_payouts_still_settle(stack_dir: Path) -> None:
    """Issue 17 item 4: `payops up` heals. SIGKILL the worker: it comes back (logged, after its
    backoff) and a payout created afterwards settles. SIGKILL the sandbox bank: it comes back with
    its record of payments (its own SQLite under the data dir), and the next payout settles too."""
    import random

    from devstack.demo import DEMO_MERCHANTS, DemoClient
    from core.platform.settings import Settings

    env = _stack_env(stack_dir / ".payops", free_port(), free_port(), free_port())
    env["PAYOPS_DEMO_ENABLED"] = "false"
    m = DEMO_MERCHANTS[0]
    rng = random.Random(7)
    with payops_up(env, stack_dir, "heal") as stack:
        bank_url = stack.service_url("bank")
        demo = DemoClient(stack.api_url, Settings(_env_file=None))
        restarted: dict[str, float] = {}

        def kill_and_wait_restart(service: str) -> None:
            old = _pid_of(stack.data_dir, stack.proc.pid, service)
            killed_at = time.monotonic()
            os.kill(old, signal.SIGKILL)
            deadline = time.monotonic() + 60
            while not _restarted(stack, service, old):
                assert stack.proc.poll() is None, f"payops up stopped:\n{stack.text()}"
                assert time.monotonic() < deadline, f"{service} not restarted within 60s:\n{stack.text()}"
                time.sleep(0.2)
            restarted[service] = time.monotonic() - killed_at

        async def payout_settles() -> str:
            payout, deadline = None, time.monotonic() + 60
            while payout is None:  # the API may answer 503 while a dependency comes back
                payout = await demo.create_payout(m, rng)
                assert payout is not None or time.monotonic() < deadline, "no payout could be created"
                if payout is None:
                    time.sleep(0.5)
            status, deadline = payout["status"], time.monotonic() + 90
            while status != "settled":
                assert time.monotonic() < deadline, f"payout {payout['id']} is {status}, not settled:\n{stack.text()}"
                time.sleep(0.5)
                r = await demo.http.get(f"/payouts/{payout['id']}", headers=demo.ops)
                status = r.json().get("status", status) if r.status_code == 200 else status
            return payout["id"]

        def bank_record() -> dict[str, str]:
            r = httpx.get(f"{bank_url}/v1/payments", params={"since": "2000-01-01T00:00:00Z"}, timeout=10)
            assert r.status_code == 200, r.text
            return {p["reference"]: p["status"] for p in r.json()["payments"]}

        try:
            await demo.ensure_merchant(m)
            kill_and_wait_restart("worker")
            assert "worker exited unexpectedly (exit code -9); restarting in 1s" in stack.text(), stack.text()
            await payout_settles()
            before = bank_record()
            assert before and set(before.values()) == {"settled"}, before

            kill_and_wait_restart("bank")
            # the supervisor restarts the process; it listens a moment later (poll, with a deadline)
            wait_for_port("127.0.0.1", httpx.URL(bank_url).port, 30, what="the restarted sandbox bank")
            assert bank_record() == before  # the bank's view survived its restart
            await payout_settles()
            after = bank_record()
            assert len(after) == len(before) + 1 and set(after.values()) == {"settled"}, after
        finally:
            await demo.aclose()
        assert stack.proc.poll() is None
        pids = stack.pids() | {_pid_of(stack.data_dir, stack.proc.pid, s) or 0 for s in ("worker", "bank")}
        stack.proc.send_signal(signal.SIGINT)
        assert stack.proc.wait(STOP_DEADLINE_S) == 0, stack.text()
        assert _wait_all_gone(pids - {0}, 20) == set(), stack.text()
    print("\nrestarted after SIGKILL: " + ", ".join(f"{k} {v:.1f}s" for k, v in restarted.items()))
