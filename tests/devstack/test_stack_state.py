"""Every `payops` command finds the stack that `payops up` runs in the same folder
(devstack/stack_state.py): `payops ledger check` with no PAYOPS_* variables uses the URLs of the
running stack's stack.json; explicit variables win; a stale file is ignored."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from core.platform.settings import Settings
from devstack.stack_state import stack_values, with_running_stack

CLI = [sys.executable, "-c", "from cli.main import app; app()"]


def write_state(data_dir: Path, pid: int, services: dict) -> None:
    data_dir.mkdir(parents=True, exist_ok=True)
    state = {"pid": pid, "create_time": psutil.Process(pid).create_time() if psutil.pid_exists(pid) else None,
             "started_at": "2026-01-01T00:00:00+00:00", "data_dir": str(data_dir), "services": services}
    (data_dir / "stack.json").write_text(json.dumps(state))


def bare_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PAYOPS_")}
    env.update(extra)
    return env


def run(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_ledger_check_beside_a_running_stack_needs_no_variables(tmp_path: Path, database_url: str, redis_url: str):
    # the cwd of `payops up` and of the command: ./.payops is the default data dir, no .env there
    workdir = tmp_path
    env = bare_env(PYTHONPATH=str(Path(__file__).resolve().parent.parent.parent))

    alone = run(["ledger", "check"], workdir, env)
    assert alone.returncode == 2, alone.stdout + alone.stderr
    assert "PAYOPS_DATABASE_URL is not set" in alone.stderr and "payops up" in alone.stderr

    # this test process stands in for `payops up`: alive, so its stack.json counts
    write_state(workdir / ".payops", os.getpid(), {
        "postgres": {"url": database_url, "port": 5432}, "redis": {"url": redis_url},
        "temporal": {"url": "127.0.0.1:7999", "ui_url": "http://127.0.0.1:8999"},
    })  # fmt: skip
    beside = run(["ledger", "check"], workdir, env)
    assert beside.returncode == 0, beside.stdout + beside.stderr
    assert "ledger OK" in beside.stdout

    # an explicit variable wins over the stack (here: a database that does not exist)
    wrong = database_url.rsplit("/", 1)[0] + "/no_such_database"
    explicit = run(["ledger", "check"], workdir, {**env, "PAYOPS_DATABASE_URL": wrong})
    assert explicit.returncode != 0 and "ledger OK" not in explicit.stdout

    # the stack is gone (SIGKILLed, its file left behind): the file is ignored
    write_state(workdir / ".payops", dead_pid(), {"postgres": {"url": database_url}})
    stale = run(["ledger", "check"], workdir, env)
    assert stale.returncode == 2 and "PAYOPS_DATABASE_URL is not set" in stale.stderr


def test_explicit_settings_win_and_external_temporal_is_kept(tmp_path: Path):
    data_dir = tmp_path / "d"
    write_state(data_dir, os.getpid(), {
        "postgres": {"url": "postgresql://stack/db"}, "redis": {"url": "redis://stack:1"},
        "temporal": {"url": "127.0.0.1:7999", "ui_url": "http://127.0.0.1:8999"},
        "bank": {"url": "http://127.0.0.1:9001"},
    })  # fmt: skip
    completed = with_running_stack(Settings(_env_file=None, data_dir=data_dir))
    assert completed.database_url == "postgresql://stack/db" and completed.redis_url == "redis://stack:1"
    assert completed.temporal_address == "127.0.0.1:7999" and completed.sandbox_bank_url == "http://127.0.0.1:9001"

    explicit = Settings(_env_file=None, data_dir=data_dir, database_url="postgresql://mine/db",
                        temporal_address="10.0.0.1:7233")
    values = stack_values(explicit)
    assert "database_url" not in values and "temporal_address" not in values and values["redis_url"] == "redis://stack:1"

    external = stack_values(Settings(_env_file=None, data_dir=data_dir, temporal_external=True))
    assert "temporal_address" not in external and "temporal_ui_url" not in external


@pytest.mark.parametrize("content", ["", "{not json", "[]"])
def test_an_unreadable_state_file_is_no_stack(tmp_path: Path, content: str):
    (tmp_path / "stack.json").write_text(content)
    assert stack_values(Settings(_env_file=None, data_dir=tmp_path)) == {}
