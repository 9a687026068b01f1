"""`payops up` and `payops status`: the whole dev stack as child processes of one command.

`run_up` starts PostgreSQL, Redis and the Temporal dev server (each unless an external one is
configured), applies the migrations, starts the sandbox bank, the worker and the API, prints
where everything is, and then supervises (devstack/supervisor.py): a child that dies is restarted
with backoff and the restart is logged; Ctrl-C / SIGTERM stops the children in reverse order, and
so does a crash loop (a child dying again and again), with a pointer to its log. Nothing outlives it: every
child also carries PR_SET_PDEATHSIG (see devstack/embedded.py), so even a SIGKILL of `payops up`
leaves no process behind.

State under `settings.data_dir` (default ./.payops): postgres/, redis/, temporal.db, logs/,
payops.lock (one `payops up` per data dir) and stack.json (what runs where, for `payops status`).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import sys
import threading
import time
from datetime import timedelta
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psutil
from rich.console import Console
from rich.panel import Panel
from rich.table import Table

from devstack.embedded import (
    LOOPBACK,
    EmbeddedPostgres,
    EmbeddedRedis,
    ManagedProcess,
    ServiceStartError,
    TemporalDevServer,
    free_port,
    port_is_free,
    port_is_open,
    wait_for_port,
)
from core.platform.names import SEARCH_ATTRIBUTES
from core.platform.settings import Settings
from devstack.demo import DEMO_WORLD_SEED, demo_world_since
from devstack.supervisor import CrashLoop, RestartPolicy, Supervisor
from api.codec_server import CODEC_PATH, mint_ui_token, ui_codec_endpoint
from core.platform.db import run_migrations
from core.platform.names import health_workflow_id
from core.platform.temporal import connect_temporal, register_search_attributes
from workflows.health import HealthCheckInput, HealthCheckWorkflow

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2  # port taken, already running, bad configuration
EXIT_NOT_RUNNING = 3

API_READY_TIMEOUT_S = 120.0
SERVICE_START_TIMEOUT_S = 60.0
# Grace periods for a clean stop, in the order the stack is stopped.
STOP_GRACE_S = {"demo": 5.0, "api": 10.0, "worker": 20.0, "bank": 5.0, "vima": 5.0, "payshack": 5.0, "temporal": 15.0, "redis": 10.0, "postgres": 30.0}
LOOPBACK_NAMES = {"127.0.0.1", "localhost", "::1"}


class _StopRequested(Exception):
    def __init__(self, signame: str) -> None:
        super().__init__(signame)
        self.signame = signame


class _ChildDied(Exception):
    def __init__(self, service: _Service) -> None:
        super().__init__(service.name)
        self.service = service


@dataclass
class _Service:
    """One part of the stack: started by us (process set) or external (process None)."""

    name: str
    url: str | None = None
    port: int | None = None
    host: str = LOOPBACK
    process: ManagedProcess | None = None
    stop: Callable[[], None] | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    restart: Callable[[], ManagedProcess] | None = None  # start it again, same command and ports

    def record(self) -> dict[str, Any]:
        rec: dict[str, Any] = {
            "pid": self.process.pid if self.process else None,
            "create_time": _create_time(self.process.pid) if self.process else None,
            "url": self.url,
            "host": self.host,
            "port": self.port,
            "log": str(self.process.log_file) if self.process else None,
            "external": self.process is None,
        }
        rec.update(self.extra)
        return rec


def _create_time(pid: int) -> float | None:
    try:
        return psutil.Process(pid).create_time()
    except psutil.Error:
        return None


def _pid_alive(pid: int | None, create_time: float | None = None) -> bool:
    """Alive and the same process (a recycled pid has another create time)."""
    if not pid:
        return False
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        return create_time is None or abs(proc.create_time() - create_time) < 1.0
    except psutil.Error:
        return False


# --------------------------------------------------------------------------------------
# one `payops up` per data dir


@contextlib.contextmanager
def _data_dir_lock(data_dir: Path) -> Iterator[int | None]:
    """Yield None when we hold the lock, else the pid of the `payops up` that does.

    flock is released by the kernel when its holder dies, so a lock left by a killed run is
    simply taken over.
    """
    path = data_dir / "payops.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            try:
                holder = int(os.pread(fd, 32, 0).decode().strip() or 0)
            except ValueError:
                holder = 0
            yield holder or -1
            return
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        try:
            yield None
        finally:
            os.ftruncate(fd, 0)
            path.unlink(missing_ok=True)
    finally:
        os.close(fd)


# --------------------------------------------------------------------------------------
# ports


def _split_host_port(address: str, default_port: int) -> tuple[str, int]:
    host, sep, port = address.rpartition(":")
    if not sep:
        return address, default_port
    return host.strip("[]"), int(port)


def _loopback(host: str) -> str:
    return LOOPBACK if host in ("localhost", "") else host


def _ports_to_bind(settings: Settings) -> list[tuple[str, int, str]]:
    """(host, port, setting) for every fixed port `payops up` will bind."""
    wanted = [(_loopback(settings.api_host), settings.api_port, "PAYOPS_API_PORT")]
    if not settings.temporal_external:
        host, port = _split_host_port(settings.temporal_address, 7233)
        wanted.append((_loopback(host), port, "PAYOPS_TEMPORAL_ADDRESS"))
        if settings.temporal_ui_port:
            wanted.append((_loopback(host), settings.temporal_ui_port, "PAYOPS_TEMPORAL_UI_PORT"))
    if not settings.database_url and settings.pg_port:
        wanted.append((LOOPBACK, settings.pg_port, "PAYOPS_PG_PORT"))
    if not settings.redis_url and settings.redis_port:
        wanted.append((LOOPBACK, settings.redis_port, "PAYOPS_REDIS_PORT"))
    if not settings.sandbox_bank_url and settings.sandbox_bank_port:
        wanted.append((LOOPBACK, settings.sandbox_bank_port, "PAYOPS_SANDBOX_BANK_PORT"))
    return wanted


def check_ports(settings: Settings) -> list[str]:
    """One line per problem with the ports `payops up` would bind; empty when all is well."""
    problems: list[str] = []
    if not settings.temporal_external:
        host, _ = _split_host_port(settings.temporal_address, 7233)
        if host not in LOOPBACK_NAMES:
            problems.append(
                f"PAYOPS_TEMPORAL_ADDRESS={settings.temporal_address} is not a loopback address; the embedded "
                "Temporal only listens on 127.0.0.1 (set PAYOPS_TEMPORAL_EXTERNAL=true to use that server)"
            )
            return problems
    seen: dict[int, str] = {}
    for host, port, setting in _ports_to_bind(settings):
        if port in seen:
            problems.append(f"port {port} is configured twice ({seen[port]} and {setting})")
            continue
        seen[port] = setting
        if not port_is_free(host, port):
            problems.append(f"port {port} is taken ({setting}): stop what uses it or set {setting} to a free port")
    return problems


# --------------------------------------------------------------------------------------
# the stack


class _Stack:
    def __init__(self, settings: Settings, console: Console) -> None:
        self.settings = settings
        self.console = console
        self.data_dir = settings.data_dir
        self.logs = self.data_dir / "logs"
        self.state_file = self.data_dir / "stack.json"
        self.services: list[_Service] = []  # in start order; stopped in reverse
        self.worker_metrics_url = ""

    # -- progress output
    def _done(self, name: str, started: float, detail: str) -> None:
        self.console.print(f"  [green]✓[/] {name:<10} [dim]{time.monotonic() - started:7.2f}s[/]  {detail}")

    def _external(self, name: str, detail: str) -> None:
        self.console.print(f"  [cyan]→[/] {name:<10} [dim]{'external':>7}[/]  {detail}")

    # -- starting
    def _start_postgres(self) -> str:
        if self.settings.database_url:
            self._external("postgres", _redact(self.settings.database_url))
            self.services.append(_Service("postgres", url=self.settings.database_url, **_host_port(self.settings.database_url, 5432)))
            return self.settings.database_url
        started = time.monotonic()
        pg = EmbeddedPostgres(
            self.data_dir / "postgres",
            self.settings.pg_port,
            log_file=self.logs / "postgres.log",
            startup_timeout_s=SERVICE_START_TIMEOUT_S,
        )
        service = _Service("postgres", stop=lambda: pg.stop(STOP_GRACE_S["postgres"]))
        self.services.append(service)
        pg.start()
        url = pg.ensure_database("payops")
        service.process, service.url, service.port = pg.process, url, pg.port
        service.restart = _restarter(pg)
        self._done("postgres", started, url)
        return url

    def _start_redis(self) -> str:
        if self.settings.redis_url:
            self._external("redis", _redact(self.settings.redis_url))
            self.services.append(_Service("redis", url=self.settings.redis_url, **_host_port(self.settings.redis_url, 6379)))
            return self.settings.redis_url
        started = time.monotonic()
        server = EmbeddedRedis(
            self.data_dir / "redis",
            self.settings.redis_port,
            log_file=self.logs / "redis.log",
            startup_timeout_s=SERVICE_START_TIMEOUT_S,
        )
        service = _Service("redis", stop=lambda: server.stop(STOP_GRACE_S["redis"]))
        self.services.append(service)
        server.start()
        service.process, service.url, service.port = server.process, server.url, server.port
        service.restart = _restarter(server)
        self._done("redis", started, server.url)
        return server.url

    def _start_temporal(self) -> tuple[str, str]:
        """(frontend address, UI url)."""
        if self.settings.temporal_external:
            self._external("temporal", self.settings.temporal_address)
            host, port = _split_host_port(self.settings.temporal_address, 7233)
            self.services.append(
                _Service("temporal", url=self.settings.temporal_address, host=host, port=port,
                         extra={"ui_url": self.settings.temporal_ui_url})
            )  # fmt: skip
            return self.settings.temporal_address, self.settings.temporal_ui_url
        started = time.monotonic()
        _, port = _split_host_port(self.settings.temporal_address, 7233)
        server = TemporalDevServer(
            self.data_dir / "temporal.db",
            port,
            self.settings.temporal_ui_port or 0,
            SEARCH_ATTRIBUTES,
            namespace=self.settings.temporal_namespace,
            log_file=self.logs / "temporal.log",
            startup_timeout_s=SERVICE_START_TIMEOUT_S,
            ui_codec_endpoint=_ui_codec_endpoint(self.settings),
        )
        service = _Service("temporal", stop=lambda: server.stop(STOP_GRACE_S["temporal"]))
        self.services.append(service)
        server.start()
        ui_url = server.ui_url or ""
        service.process, service.url, service.port = server.process, server.address, server.port
        service.extra = {"ui_url": ui_url, "ui_port": server.ui_port}
        service.restart = _restarter(server)
        self._done("temporal", started, f"{server.address}  (UI {ui_url})")
        return server.address, ui_url

    def _migrate(self, database_url: str) -> None:
        started = time.monotonic()

        try:
            run_migrations(database_url)
        except Exception as exc:
            raise ServiceStartError(
                f"migrations failed on {_redact(database_url)}: {type(exc).__name__}: {exc}"
            ) from exc
        self._done("migrations", started, "alembic upgrade heads")

    def _spawn(self, name: str, cmd: list[str], env: dict[str, str], *, port: int | None = None, url: str | None = None) -> _Service:
        def spawn() -> ManagedProcess:
            return ManagedProcess.spawn(cmd, env=env, log_file=self.logs / f"{name}.log", name=name)

        service = _Service(name, url=url, port=port, process=spawn(), restart=spawn)
        service.stop = lambda: service.process.stop(STOP_GRACE_S[name]) if service.process else None
        self.services.append(service)
        return service

    def _start_bank(self, env: dict[str, str]) -> str:
        if self.settings.sandbox_bank_url:
            self._external("bank", self.settings.sandbox_bank_url)
            self.services.append(_Service("bank", url=self.settings.sandbox_bank_url, **_host_port(self.settings.sandbox_bank_url, 80)))
            return self.settings.sandbox_bank_url
        started = time.monotonic()
        port = self.settings.sandbox_bank_port or free_port()
        url = f"http://{LOOPBACK}:{port}"
        api_host = _loopback(self.settings.api_host) if self.settings.api_host != "0.0.0.0" else LOOPBACK
        cmd = [
            sys.executable, "-m", "sandbox.bank",
            "--host", LOOPBACK,
            "--port", str(port),
            "--webhook-url", f"http://{api_host}:{self.settings.api_port}/api/v1/webhooks/banks/sandbox",
            "--webhook-secret", self.settings.bank_webhook_secrets_for("sandbox")[0],
            "--settle-delay", str(self.settings.sandbox_bank_settle_delay_seconds),
            # its record of payments survives its restarts, as a real bank's would (sandbox/bank_store.py)
            "--store", str(self.data_dir / "bank" / "payments.sqlite3"),
        ]  # fmt: skip
        service = self._spawn("bank", cmd, env, port=port, url=url)
        wait_for_port(LOOPBACK, port, SERVICE_START_TIMEOUT_S, process=service.process, what="sandbox bank")
        self._done("bank", started, url)
        return url

    def _start_provider_simulator(self, name: str, configured_url: str | None, args: list[str],
                                  env: dict[str, str]) -> str:
        """The Vima / PayShack simulators (sandbox/), unless a real provider URL is configured."""
        if configured_url:
            self._external(name, configured_url)
            return configured_url
        started = time.monotonic()
        port = free_port()
        url = f"http://{LOOPBACK}:{port}"
        cmd = [sys.executable, "-m", f"sandbox.{name}", "--host", LOOPBACK, "--port", str(port), *args]
        service = self._spawn(name, cmd, env, port=port, url=url)
        wait_for_port(LOOPBACK, port, SERVICE_START_TIMEOUT_S, process=service.process, what=f"{name} simulator")
        self._done(name, started, url)
        return url

    def _start_worker_and_api(self, env: dict[str, str]) -> str:
        started = time.monotonic()
        metrics_port = self.settings.worker_metrics_port or free_port()
        self.worker_metrics_url = f"http://{LOOPBACK}:{metrics_port}/metrics"
        self._spawn("worker", [sys.executable, "-m", "workers.main"],
                    {**env, "PAYOPS_WORKER_METRICS_PORT": str(metrics_port)})
        host, port = self.settings.api_host, self.settings.api_port
        api_url = f"http://{_loopback(host) if host != '0.0.0.0' else LOOPBACK}:{port}"
        cmd = [
            sys.executable, "-m", "uvicorn", "api.app:create_app", "--factory",
            "--host", host, "--port", str(port),
            "--workers", str(self.settings.api_workers or os.cpu_count() or 1),
        ]  # fmt: skip
        self._spawn("api", cmd, env, port=port, url=api_url)
        self._wait_ready(api_url)
        self._done("api", started, f"{api_url}  (worker running)")
        self._prove_worker()
        return api_url

    def _start_demo(self, env: dict[str, str], api_url: str) -> None:
        """Demo data flowing through the API (devstack/demo.py), in dev unless PAYOPS_DEMO_ENABLED=false."""
        if self.settings.env != "dev" or not self.settings.demo_enabled:
            return
        started = time.monotonic()
        cmd = [sys.executable, "-m", "devstack.demo", "--api-url", api_url,
               "--interval", str(self.settings.demo_payout_interval_seconds)]
        self._spawn("demo", cmd, env)
        self._done("demo", started, f"demo merchants paying out every ~{self.settings.demo_payout_interval_seconds:g}s "
                                    "(`payops demo --reset` starts over)")

    def _prove_worker(self) -> None:
        """Run the trivial health workflow end to end: client → server → worker → activity."""
        import asyncio
        import uuid


        started = time.monotonic()
        temporal = self._service("temporal")
        settings = self.settings.model_copy(update={"temporal_address": temporal.url}) if temporal else self.settings

        async def run() -> str:
            client = await connect_temporal(settings)
            if settings.temporal_external:
                await register_search_attributes(client)
            result = await client.execute_workflow(
                HealthCheckWorkflow.run, HealthCheckInput(requested_by="payops up"),
                id=health_workflow_id(uuid.uuid4().hex), task_queue=settings.temporal_task_queue,
                execution_timeout=timedelta(seconds=API_READY_TIMEOUT_S),
            )
            if not result.ok:
                raise ServiceStartError(f"the health workflow ran but the worker reports {result.report}")
            return result.report.worker_host

        host = asyncio.run(run())
        self._done("health workflow", started, f"ran end to end on worker {host}")

    def _wait_ready(self, api_url: str) -> None:
        import httpx

        deadline = time.monotonic() + API_READY_TIMEOUT_S
        last = "no answer"
        with httpx.Client(timeout=5.0) as client:
            while True:
                self._check_children()
                try:
                    resp = client.get(f"{api_url}/ready")
                    if resp.status_code == 200:
                        return
                    last = f"{resp.status_code} {resp.text[:300]}"
                except httpx.HTTPError as exc:
                    last = type(exc).__name__
                if time.monotonic() > deadline:
                    api = self._service("api")
                    tail = api.process.log_tail() if api and api.process else ""
                    raise ServiceStartError(
                        f"the API did not report ready within {API_READY_TIMEOUT_S:.0f}s (last: {last}); "
                        f"last lines of {self.logs / 'api.log'}:\n{tail}"
                    )
                time.sleep(0.2)

    def _service(self, name: str) -> _Service | None:
        return next((s for s in self.services if s.name == name), None)

    def _check_children(self) -> None:
        for service in self.services:
            if service.process is not None and not service.process.alive:
                raise _ChildDied(service)

    def _child_env(self, database_url: str, redis_url: str, temporal_address: str, temporal_ui_url: str, bank_url: str | None) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            PAYOPS_DATA_DIR=str(self.data_dir),
            PAYOPS_DATABASE_URL=database_url,
            PAYOPS_REDIS_URL=redis_url,
            PAYOPS_TEMPORAL_ADDRESS=temporal_address,
            PAYOPS_TEMPORAL_UI_URL=temporal_ui_url,
            PAYOPS_API_HOST=self.settings.api_host,
            PAYOPS_API_PORT=str(self.settings.api_port),
            PYTHONUNBUFFERED="1",
        )
        if bank_url:
            env["PAYOPS_SANDBOX_BANK_URL"] = bank_url
        return env

    # -- the whole thing
    def start(self) -> str:
        self.logs.mkdir(parents=True, exist_ok=True)
        self.console.print(f"[bold]payops[/] starting in {self.data_dir}")
        t0 = time.monotonic()
        database_url = self._start_postgres()
        redis_url = self._start_redis()
        temporal_address, temporal_ui_url = self._start_temporal()
        self._migrate(database_url)
        env = self._child_env(database_url, redis_url, temporal_address, temporal_ui_url, None)
        bank_url = self._start_bank(env)
        env["PAYOPS_SANDBOX_BANK_URL"] = bank_url
        # both simulators serve the demo's shared payments (sandbox/world.py) from the same instant,
        # so reconciliation finds the same payments on both sides but for a realistic few
        world = ["--world-seed", str(DEMO_WORLD_SEED), "--world-since", demo_world_since(self.settings).isoformat()]
        env["PAYOPS_VIMA_BASE_URL"] = self._start_provider_simulator(
            "vima", self.settings.vima_base_url,
            ["--api-key", self.settings.vima_api_key, "--trickle", "2", *world], env,
        )
        env["PAYOPS_PAYSHACK_BASE_URL"] = self._start_provider_simulator(
            "payshack", self.settings.payshack_base_url,
            ["--email", self.settings.payshack_email, "--password", self.settings.payshack_password, *world], env,
        )
        api_url = self._start_worker_and_api(env)
        self._start_demo(env, api_url)
        self._write_state()
        self._print_ready(api_url, database_url, redis_url, temporal_ui_url, bank_url, time.monotonic() - t0)
        return api_url

    def supervise(self) -> None:
        """Restart children that die, until a signal (raises _StopRequested) or a crash loop
        (raises _ChildDied)."""

        def log(message: str) -> None:
            from rich.markup import escape

            self.console.print(f"[yellow]{datetime.now(UTC):%H:%M:%S} supervisor:[/] {escape(message)}", highlight=False)

        supervisor = Supervisor(lambda: self.services, policy=RestartPolicy.from_settings(self.settings), log=log,
                                on_restart=lambda _s: self._write_state())
        while True:
            try:
                supervisor.poll()
            except CrashLoop as loop:
                self.console.print(f"[red]✗ crash loop: {loop}; giving up[/]")
                raise _ChildDied(loop.service) from loop  # type: ignore[arg-type]
            time.sleep(0.25)

    def stop_all(self) -> None:
        for service in reversed(self.services):
            if service.stop is None:
                continue
            started = time.monotonic()
            try:
                service.stop()
                code = service.process.returncode if service.process else None
                note = "" if code in (0, None, -signal.SIGTERM, -signal.SIGINT) else f" (exit code {code})"
                self.console.print(f"  [dim]■[/] {service.name:<10} [dim]stopped in {time.monotonic() - started:.2f}s{note}[/]")
            except Exception as exc:  # noqa: BLE001 — keep stopping the others
                self.console.print(f"  [red]![/] {service.name:<10} could not be stopped cleanly: {exc}")
        self.state_file.unlink(missing_ok=True)

    def _write_state(self) -> None:
        state = {
            "pid": os.getpid(),
            "create_time": _create_time(os.getpid()),
            "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "data_dir": str(self.data_dir),
            "services": {s.name: s.record() for s in self.services},
        }
        tmp = self.state_file.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(state, indent=2))
        tmp.replace(self.state_file)

    def _print_ready(self, api_url: str, database_url: str, redis_url: str, temporal_ui_url: str, bank_url: str, took: float) -> None:
        grid = Table.grid(padding=(0, 2))
        grid.add_column(style="bold")
        grid.add_column()
        grid.add_row("Console", f"{api_url}/console/")
        grid.add_row("API docs", f"{api_url}/docs")
        grid.add_row("Metrics", f"{api_url}/metrics  (API)")
        grid.add_row("", f"{self.worker_metrics_url}  (worker)")
        grid.add_row("Temporal UI", temporal_ui_url or "(headless)")
        grid.add_row("Temporal CLI", f'--codec-endpoint {api_url}/codec --codec-auth "Bearer $PAYOPS_TOKEN"  (docs/operations.md)')
        grid.add_row("PostgreSQL", _redact(database_url))
        grid.add_row("Redis", _redact(redis_url))
        grid.add_row("Sandbox bank", bank_url)
        grid.add_row("Logs", str(self.logs))
        self.console.print(Panel(grid, title=f"payops is up ({took:.1f}s)", subtitle="Ctrl-C stops everything", expand=False))
        token = _dev_token(self.settings)
        if token:
            # Plain print: a wrapped token cannot be copied.
            print("Dev token (ops_admin, valid 24 h):")
            print(f"  export PAYOPS_TOKEN={token}")
            print("Try:")
            print(f'  curl -H "Authorization: Bearer $PAYOPS_TOKEN" {api_url}/api/v1/payouts')
        print(f"  curl {api_url}/ready", flush=True)


def _restarter(server: Any) -> Callable[[], ManagedProcess]:
    """Restart an embedded server (PostgreSQL, Redis, Temporal) on the ports it has now, so the
    URLs the other children were given stay right."""
    server.requested_port = server.port
    if hasattr(server, "requested_ui_port"):
        server.requested_ui_port = server.ui_port

    def restart() -> ManagedProcess:
        server.start()
        return server.process

    return restart


def _dev_token(settings: Settings) -> str | None:
    try:
        from core.platform.auth_tokens import mint_dev_token  # why: a dev token is optional; no crypto, no token
    except ImportError:
        return None
    try:
        return mint_dev_token(settings, role="ops_admin", sub="dev-ops", ttl_seconds=86400)
    except Exception:  # noqa: BLE001 — an RS256 deployment has no dev tokens
        return None


def _ui_codec_endpoint(settings: Settings) -> str | None:
    """The codec endpoint of the dev Temporal UI: the API's /codec with a codec-only token in its
    path (the dev UI cannot send a header; see api/codec_server.py). None off dev or without dev tokens."""
    if settings.env != "dev":
        return None
    try:
        token = mint_ui_token(settings)
    except Exception:  # noqa: BLE001 — an RS256 deployment has no dev tokens
        return None
    host = settings.api_host
    api_url = f"http://{_loopback(host) if host != '0.0.0.0' else LOOPBACK}:{settings.api_port}"
    return ui_codec_endpoint(api_url + CODEC_PATH, token)


def _redact(url: str) -> str:
    parts = urlsplit(url)
    if parts.password:
        return url.replace(f":{parts.password}@", ":***@")
    return url


def _host_port(url: str, default_port: int) -> dict[str, Any]:
    parts = urlsplit(url)
    return {"host": parts.hostname or LOOPBACK, "port": parts.port or default_port}


@contextlib.contextmanager
def _stop_signals(console: Console) -> Iterator[Callable[[], None]]:
    """SIGINT/SIGTERM/SIGHUP raise _StopRequested once; the yielded function makes later ones
    only print, so that a second Ctrl-C cannot interrupt the orderly stop."""
    if threading.current_thread() is not threading.main_thread():
        yield lambda: None
        return
    signals = [signal.SIGINT, signal.SIGTERM, signal.SIGHUP]
    previous = {s: signal.getsignal(s) for s in signals}

    def request_stop(signum: int, _frame: object) -> None:
        raise _StopRequested(signal.Signals(signum).name)

    def already_stopping(signum: int, _frame: object) -> None:
        console.print("[yellow]already stopping; waiting for the services to exit…[/]")

    def shield() -> None:
        for s in signals:
            signal.signal(s, already_stopping)

    for s in signals:
        signal.signal(s, request_stop)
    try:
        yield shield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def run_up(settings: Settings) -> int:
    """Start everything, print where it is, supervise until Ctrl-C/SIGTERM. Returns an exit code."""
    console = Console(highlight=False)
    data_dir = settings.data_dir
    data_dir.mkdir(parents=True, exist_ok=True)
    with _data_dir_lock(data_dir) as holder:
        if holder is not None:
            who = f"pid {holder}" if holder > 0 else "another process"
            console.print(f"[red]payops is already running on {data_dir} ({who}); `payops status` shows it[/]")
            return EXIT_USAGE
        (data_dir / "stack.json").unlink(missing_ok=True)  # we hold the lock: any such file is stale
        problems = check_ports(settings)
        if problems:
            for line in problems:
                console.print(f"[red]{line}[/]")
            return EXIT_USAGE

        stack = _Stack(settings, console)
        with _stop_signals(console) as shield:
            try:
                stack.start()
                stack.supervise()
            except _StopRequested as req:
                shield()
                console.print(f"\n[bold]{req.signame}[/]: stopping payops…")
                stack.stop_all()
                return EXIT_OK
            except _ChildDied as died:
                shield()
                proc = died.service.process
                assert proc is not None
                console.print(f"[red]✗ {died.service.name} exited unexpectedly (exit code {proc.returncode}); "
                              f"last lines of {proc.log_file}:[/]")  # fmt: skip
                console.print(proc.log_tail(), markup=False, highlight=False)
                console.print("stopping the rest…")
                stack.stop_all()
                return EXIT_FAILED
            except ServiceStartError as exc:
                shield()
                console.print(f"✗ {exc}", markup=False, style="red")
                stack.stop_all()
                return EXIT_FAILED
            except BaseException as exc:
                shield()
                console.print(f"✗ payops up failed: {type(exc).__name__}: {exc}", markup=False, style="red")
                stack.stop_all()
                if isinstance(exc, Exception):
                    console.print_exception(max_frames=8)
                    return EXIT_FAILED
                raise
    return EXIT_OK  # pragma: no cover - every path above returns


# --------------------------------------------------------------------------------------
# payops status


def show_status(settings: Settings) -> int:
    """Print what runs where. 0 = up, 1 = up but something is down, 3 = not running."""
    console = Console(highlight=False)
    state_file = settings.data_dir / "stack.json"
    try:
        state = json.loads(state_file.read_text())
    except FileNotFoundError:
        console.print(f"payops is not running (no {state_file})")
        return EXIT_NOT_RUNNING
    except (OSError, ValueError) as exc:
        console.print(f"payops is not running ({state_file} unreadable: {exc})")
        return EXIT_NOT_RUNNING
    if not _pid_alive(state.get("pid"), state.get("create_time")):
        console.print(f"payops is not running (stale {state_file} from pid {state.get('pid')})")
        return EXIT_NOT_RUNNING

    table = Table(title=f"payops — pid {state['pid']}, up since {state.get('started_at')}, data in {state.get('data_dir')}")
    for col in ("service", "pid", "process", "port"):
        table.add_column(col, no_wrap=True)
    table.add_column("url", overflow="fold")
    table.add_column("log", overflow="fold")
    healthy = True
    for name, svc in state.get("services", {}).items():
        if svc.get("external"):
            proc_state = "[cyan]external[/]"
        elif _pid_alive(svc.get("pid"), svc.get("create_time")):
            proc_state = "[green]running[/]"
        else:
            proc_state, healthy = "[red]dead[/]", False
        port_state = "-"
        if svc.get("port"):
            ok = port_is_open(_loopback(svc.get("host") or LOOPBACK), svc["port"])
            port_state = f"[green]{svc['port']} answers[/]" if ok else f"[red]{svc['port']} closed[/]"
            healthy &= ok
        url = svc.get("url") or ""
        if svc.get("ui_url"):
            url += f"\nUI {svc['ui_url']}"
        log = svc.get("log") or ""
        with contextlib.suppress(ValueError):
            log = str(Path(log).relative_to(settings.data_dir)) if log else ""
        table.add_row(name, str(svc.get("pid") or "-"), proc_state, port_state, _redact(url) if url else "", log)
    console.print(table)
    return EXIT_OK if healthy else EXIT_FAILED
