"""Keep the dev stack's children running: restart one that dies, with backoff; give up on a crash loop.

`payops up` (devstack/stack.py) polls `Supervisor.poll()` a few times a second. A child that exits
(killed, crashed, OOM) is logged with its exit code and restarted after a backoff that doubles
with each death in the window (1 s, 2 s, 4 s … capped). More than `crash_loop_restarts` deaths of
one child within `crash_loop_window_s` is a crash loop: `CrashLoop` is raised and the stack stops,
pointing at the child's log, since restarting again would only hide the fault.

A restart reuses the child's command, environment and ports, so the others keep their URLs:
PostgreSQL, Redis and Temporal clients reconnect, and the API and worker answer 503 meanwhile
(api/outages.py). Anything that only runs once (a migration, the health workflow) is not redone.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol


class Supervised(Protocol):
    name: str
    process: Any  # devstack.embedded.ManagedProcess | None: alive, returncode, pid, log_file, log_tail()
    restart: Callable[[], Any] | None  # starts it again and returns the new process


@dataclass(frozen=True)
class RestartPolicy:
    backoff_initial_s: float = 1.0
    backoff_max_s: float = 30.0
    crash_loop_restarts: int = 5  # deaths allowed within the window; one more is a crash loop
    crash_loop_window_s: float = 120.0

    @classmethod
    def from_settings(cls, settings: Any) -> RestartPolicy:
        """The PAYOPS_SUPERVISOR_* settings (core/platform/settings.py)."""
        return cls(
            backoff_initial_s=settings.supervisor_restart_backoff_seconds,
            backoff_max_s=settings.supervisor_restart_backoff_max_seconds,
            crash_loop_restarts=settings.supervisor_crash_loop_restarts,
            crash_loop_window_s=settings.supervisor_crash_loop_window_seconds,
        )

    def backoff(self, deaths_in_window: int) -> float:
        return min(self.backoff_max_s, self.backoff_initial_s * 2 ** max(0, deaths_in_window - 1))


class CrashLoop(Exception):
    def __init__(self, service: Supervised, deaths: int, window_s: float) -> None:
        super().__init__(f"{service.name} died {deaths} times within {window_s:.0f}s")
        self.service = service
        self.deaths = deaths
        self.window_s = window_s


@dataclass
class _Track:
    deaths: list[float] = field(default_factory=list)
    restart_at: float | None = None  # set while waiting out the backoff
    restarts: int = 0


class Supervisor:
    def __init__(
        self,
        services: Callable[[], Iterable[Supervised]],
        *,
        policy: RestartPolicy | None = None,
        log: Callable[[str], None] = print,
        on_restart: Callable[[Supervised], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._services = services
        self.policy = policy or RestartPolicy()
        self._log = log
        self._on_restart = on_restart
        self._clock = clock
        self._tracks: dict[str, _Track] = {}

    def restarts(self, name: str) -> int:
        track = self._tracks.get(name)
        return track.restarts if track else 0

    def poll(self) -> None:
        """Notice deaths, restart what is due; raises CrashLoop."""
        for service in self._services():
            if service.process is None:  # external: not ours to restart
                continue
            track = self._tracks.setdefault(service.name, _Track())
            now = self._clock()
            if track.restart_at is None:
                if service.process.alive:
                    continue
                self._died(service, track, now, f"exited unexpectedly (exit code {service.process.returncode})")
            elif now >= track.restart_at:
                self._restart(service, track)

    def _died(self, service: Supervised, track: _Track, now: float, what: str) -> None:
        window = self.policy.crash_loop_window_s
        track.deaths = [t for t in track.deaths if now - t <= window] + [now]
        if service.restart is None or len(track.deaths) > self.policy.crash_loop_restarts:
            raise CrashLoop(service, len(track.deaths), window)
        delay = self.policy.backoff(len(track.deaths))
        track.restart_at = now + delay
        self._log(
            f"{service.name} {what}; restarting in {delay:g}s "
            f"({len(track.deaths)} of {self.policy.crash_loop_restarts} deaths allowed within {window:g}s; "
            f"log {getattr(service.process, 'log_file', '?')})"
        )

    def _restart(self, service: Supervised, track: _Track) -> None:
        assert service.restart is not None
        started = self._clock()
        try:
            service.process = service.restart()
        except Exception as exc:  # noqa: BLE001 — a failed start counts as another death
            track.restart_at = None
            self._died(service, track, self._clock(), f"did not start again ({type(exc).__name__}: {exc})")
            return
        track.restart_at = None
        track.restarts += 1
        self._log(f"{service.name} restarted (pid {service.process.pid}, {self._clock() - started:.1f}s)")
        if self._on_restart is not None:
            self._on_restart(service)
