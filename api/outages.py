"""Which dependency is down? Turn an exception into a 503 instead of a 500.

A request that meets PostgreSQL, Redis or Temporal down (refused, reset, timed out, a pool that
cannot hand out a connection, a server shutting down) changed nothing it could not roll back:
the client should retry later with the same Idempotency-Key. `classify` walks the exception, its
causes/contexts and exception groups, and names the dependency (or None: a real bug, a 500).

The dependency is taken from the exception's type when it says (asyncpg/SQLAlchemy, redis-py,
temporalio) and otherwise, for a bare OSError such as the ConnectionRefusedError asyncpg raises
on connect, from the modules in its traceback.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from dataclasses import dataclass

POSTGRES, REDIS, TEMPORAL, DEPENDENCY = "postgres", "redis", "temporal", "dependency"

# Seconds a client should wait before retrying, per dependency: a database restart or failover
# takes seconds; Temporal's frontend a little longer.
RETRY_AFTER_S = {POSTGRES: 2, REDIS: 2, TEMPORAL: 5, DEPENDENCY: 5}

_LABEL = {POSTGRES: "the database", REDIS: "Redis", TEMPORAL: "the workflow engine (Temporal)", DEPENDENCY: "a backing service"}

# OSErrors that mean "could not reach / lost the peer" (not e.g. a missing file).
_CONNECTION_OSERRORS = (ConnectionError, TimeoutError, socket.gaierror, socket.herror)


@dataclass(frozen=True)
class Outage:
    dependency: str  # postgres | redis | temporal | dependency
    reason: str  # the exception that showed it, for the log and the problem's detail

    @property
    def retry_after(self) -> int:
        return RETRY_AFTER_S[self.dependency]

    @property
    def problem_type(self) -> str:
        return f"{self.dependency}_unavailable" if self.dependency != DEPENDENCY else "dependency_unavailable"

    @property
    def detail(self) -> str:
        return f"{_LABEL[self.dependency]} is unavailable; nothing was changed, retry the request later"


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """exc, its causes and contexts, and the members of exception groups; each once."""
    seen: set[int] = set()
    stack = [exc]
    while stack:
        e = stack.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        yield e
        if isinstance(e, BaseExceptionGroup):
            stack.extend(e.exceptions)
        stack.extend(x for x in (e.__cause__, e.__context__) if x is not None)


def _module_of(exc: BaseException) -> str:
    return type(exc).__module__ or ""


def _from_traceback(exc: BaseException) -> str:
    """The dependency whose client code raised `exc` (innermost frame wins)."""
    found = DEPENDENCY
    tb = exc.__traceback__
    while tb is not None:
        name = tb.tb_frame.f_globals.get("__name__", "") or ""
        if name.startswith(("asyncpg", "sqlalchemy", "psycopg")):
            found = POSTGRES
        elif name.startswith("redis"):
            found = REDIS
        elif name.startswith("temporalio"):
            found = TEMPORAL
        tb = tb.tb_next
    return found


def _postgres(exc: BaseException) -> bool:
    mod = _module_of(exc)
    if mod.startswith("asyncpg"):
        import asyncpg

        return isinstance(
            exc,
            (
                asyncpg.PostgresConnectionError,  # includes ConnectionDoesNotExistError, CannotConnectNow...
                asyncpg.exceptions.CannotConnectNowError,
                asyncpg.exceptions.TooManyConnectionsError,
                asyncpg.exceptions.AdminShutdownError,
                asyncpg.exceptions.CrashShutdownError,
                asyncpg.exceptions.ConnectionFailureError,
                asyncpg.exceptions.ConnectionDoesNotExistError,
            ),
        ) or (  # "connection is closed" after a drop; not DataError (an InterfaceError too)
            type(exc) is asyncpg.InterfaceError and "connection" in str(exc).lower()
        )
    if mod.startswith("sqlalchemy"):
        from sqlalchemy import exc as sa

        if isinstance(exc, sa.TimeoutError):  # the pool could not hand out a connection in time
            return True
        if isinstance(exc, sa.DBAPIError):
            return bool(exc.connection_invalidated) or isinstance(exc, (sa.OperationalError, sa.InterfaceError))
    return False


def _redis(exc: BaseException) -> bool:
    if not _module_of(exc).startswith("redis"):
        return False
    from redis import exceptions as r

    return isinstance(exc, (r.ConnectionError, r.TimeoutError, r.BusyLoadingError))


def _temporal(exc: BaseException) -> bool:
    mod = _module_of(exc)
    if not mod.startswith("temporalio"):
        return False
    from temporalio.service import RPCError, RPCStatusCode

    if isinstance(exc, RPCError):
        return exc.status in (
            RPCStatusCode.UNAVAILABLE,
            RPCStatusCode.DEADLINE_EXCEEDED,
            RPCStatusCode.RESOURCE_EXHAUSTED,
        )
    return False


def classify(exc: BaseException) -> Outage | None:
    """The dependency outage behind `exc`, or None when it is not one."""
    for e in _chain(exc):
        reason = f"{type(e).__name__}: {e}"[:300]
        if _postgres(e):
            return Outage(POSTGRES, reason)
        if _redis(e):
            return Outage(REDIS, reason)
        if _temporal(e):
            return Outage(TEMPORAL, reason)
        if isinstance(e, RuntimeError) and "Failed client connect" in str(e):  # temporalio Client.connect
            return Outage(TEMPORAL, reason)
        if isinstance(e, _CONNECTION_OSERRORS) or isinstance(e, asyncio.TimeoutError):
            return Outage(_from_traceback(e), reason)
    return None
