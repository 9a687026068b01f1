"""What `payops up` runs, for every other `payops` command typed in the same folder.

`payops up` writes `<data dir>/stack.json` (devstack/stack.py: `_Stack._write_state`, what
`payops status` shows). A command such as `payops ledger check` run beside it, with no
`PAYOPS_*` URL variables, takes the URLs of that stack from there: the embedded PostgreSQL,
Redis, Temporal, sandbox bank and provider simulators. A variable set in the environment or in
`.env` always wins, and a stale file (its `payops up` is gone) is ignored.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from core.platform.settings import Settings
from core.platform.settings import get_settings
from devstack.stack import _pid_alive

STATE_FILE = "stack.json"

# setting <- (service in stack.json, key of its record)
_FROM_STATE: dict[str, tuple[str, str]] = {
    "database_url": ("postgres", "url"),
    "redis_url": ("redis", "url"),
    "temporal_address": ("temporal", "url"),
    "temporal_ui_url": ("temporal", "ui_url"),
    "sandbox_bank_url": ("bank", "url"),
    "vima_base_url": ("vima", "url"),
    "payshack_base_url": ("payshack", "url"),
}


def state_file(settings: Settings) -> Path:
    return settings.data_dir / STATE_FILE


def read_running_state(settings: Settings) -> dict[str, Any] | None:
    """The state of the `payops up` running on this data dir, or None (none, unreadable, stale)."""
    try:
        state = json.loads(state_file(settings).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(state, dict) or not _pid_alive(state.get("pid"), state.get("create_time")):
        return None
    return state


def stack_values(settings: Settings) -> dict[str, str]:
    """The settings a running stack supplies and that are not explicitly set (env or .env)."""
    state = read_running_state(settings)
    if state is None:
        return {}
    services = state.get("services") or {}
    values: dict[str, str] = {}
    for name, (service, key) in _FROM_STATE.items():
        if name in settings.model_fields_set or name not in Settings.model_fields:
            continue
        if name.startswith("temporal_") and settings.temporal_external:
            continue
        value = (services.get(service) or {}).get(key)
        if value:
            values[name] = str(value)
    return values


def with_running_stack(settings: Settings) -> Settings:
    """`settings` completed with the URLs of the `payops up` running on its data dir."""
    values = stack_values(settings)
    return settings.model_copy(update=values) if values else settings


def export_running_stack(settings: Settings | None = None) -> dict[str, str]:
    """Put the running stack's URLs into os.environ as PAYOPS_* variables (only those not set), so
    every `get_settings()` of this process (worker, demo, ...) sees them. Returns what was set."""
    settings = settings or Settings()
    exported = {f"PAYOPS_{name.upper()}": value for name, value in stack_values(settings).items()}
    for var, value in exported.items():
        os.environ.setdefault(var, value)
    if exported:
        get_settings.cache_clear()  # settings read before this point lacked them
    return exported
