"""devstack/supervisor.py on real child processes: a killed child comes back after its backoff, the
backoff doubles, and a child that keeps dying is a crash loop (the stack then stops)."""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from devstack.embedded import ManagedProcess
from devstack.supervisor import CrashLoop, RestartPolicy, Supervisor

SLEEPER = [sys.executable, "-c", "import time; time.sleep(60)"]
DIES_AT_ONCE = [sys.executable, "-c", "import sys; sys.exit(3)"]


@dataclass
class Child:
    name: str
    cmd: list[str]
    log_dir: Path
    process: ManagedProcess | None = None
    restart: Callable[[], ManagedProcess] | None = None
    spawned: list[ManagedProcess] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.restart = self.spawn
        self.process = self.spawn()

    def spawn(self) -> ManagedProcess:
        proc = ManagedProcess.spawn(self.cmd, log_file=self.log_dir / f"{self.name}.log", name=self.name)
        self.spawned.append(proc)
        return proc

    def stop_all(self) -> None:
        for proc in self.spawned:
            proc.stop(2)


def _poll_until(sup: Supervisor, condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        sup.poll()
        assert time.monotonic() < deadline, "condition not met"
        time.sleep(0.02)


def test_a_killed_child_is_restarted_after_its_backoff_and_logged(tmp_path: Path) -> None:
    child = Child("worker", SLEEPER, tmp_path)
    lines: list[str] = []
    restarted: list[str] = []
    policy = RestartPolicy(backoff_initial_s=0.3, backoff_max_s=1.0, crash_loop_restarts=5, crash_loop_window_s=60)
    sup = Supervisor(lambda: [child], policy=policy, log=lines.append, on_restart=lambda s: restarted.append(s.name))
    try:
        first = child.process
        sup.poll()
        assert child.process is first and not lines  # alive: nothing to do
        os.kill(first.pid, signal.SIGKILL)
        killed = time.monotonic()
        _poll_until(sup, lambda: child.process is not first)
        took = time.monotonic() - killed
        assert 0.3 <= took < 3.0, took
        assert child.process.alive and restarted == ["worker"] and sup.restarts("worker") == 1
        assert "worker exited unexpectedly (exit code -9); restarting in 0.3s" in lines[0], lines
        assert lines[1].startswith("worker restarted (pid "), lines

        second = child.process  # a second death within the window waits twice as long
        os.kill(second.pid, signal.SIGKILL)
        _poll_until(sup, lambda: child.process is not second)
        assert "restarting in 0.6s (2 of 5" in lines[2], lines
    finally:
        child.stop_all()


def test_a_child_that_keeps_dying_is_a_crash_loop(tmp_path: Path) -> None:
    child = Child("api", DIES_AT_ONCE, tmp_path)
    lines: list[str] = []
    policy = RestartPolicy(backoff_initial_s=0.01, backoff_max_s=0.05, crash_loop_restarts=3, crash_loop_window_s=60)
    sup = Supervisor(lambda: [child], policy=policy, log=lines.append)
    try:
        with pytest.raises(CrashLoop) as raised:
            _poll_until(sup, lambda: False, timeout=20)
        assert raised.value.service is child and raised.value.deaths == 4
        assert sup.restarts("api") == 3 and len(child.spawned) == 4
        assert sum("exited unexpectedly (exit code 3)" in line for line in lines) == 3
    finally:
        child.stop_all()


def test_external_services_are_left_alone(tmp_path: Path) -> None:
    @dataclass
    class External:
        name: str = "postgres"
        process: None = None
        restart: None = None

    sup = Supervisor(lambda: [External()], log=lambda _m: pytest.fail("nothing to log"))
    sup.poll()


def test_the_limits_come_from_payops_settings(tmp_path: Path, monkeypatch) -> None:
    """PAYOPS_SUPERVISOR_* reach the policy `payops up` supervises with (docs/outages.md)."""
    from core.platform.settings import Settings

    monkeypatch.setenv("PAYOPS_SUPERVISOR_RESTART_BACKOFF_SECONDS", "0.01")
    monkeypatch.setenv("PAYOPS_SUPERVISOR_RESTART_BACKOFF_MAX_SECONDS", "0.02")
    monkeypatch.setenv("PAYOPS_SUPERVISOR_CRASH_LOOP_RESTARTS", "1")
    monkeypatch.setenv("PAYOPS_SUPERVISOR_CRASH_LOOP_WINDOW_SECONDS", "30")
    policy = RestartPolicy.from_settings(Settings(_env_file=None))
    assert policy == RestartPolicy(backoff_initial_s=0.01, backoff_max_s=0.02, crash_loop_restarts=1,
                                   crash_loop_window_s=30.0)
    child = Child("worker", DIES_AT_ONCE, tmp_path)
    lines: list[str] = []
    sup = Supervisor(lambda: [child], policy=policy, log=lines.append)
    try:  # one restart allowed, then the second death is a crash loop
        with pytest.raises(CrashLoop) as raised:
            _poll_until(sup, lambda: False, timeout=20)
        assert raised.value.deaths == 2 and sup.restarts("worker") == 1
        assert "restarting in 0.01s (1 of 1 deaths allowed within 30s" in lines[0], lines
    finally:
        child.stop_all()


def test_bad_supervisor_settings_are_refused(monkeypatch) -> None:
    from pydantic import ValidationError

    from core.platform.settings import Settings

    monkeypatch.setenv("PAYOPS_SUPERVISOR_RESTART_BACKOFF_SECONDS", "0")
    with pytest.raises(ValidationError, match="supervisor_restart_backoff_seconds"):
        Settings(_env_file=None)
