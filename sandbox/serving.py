"""Run an ASGI app under uvicorn inside the current event loop, on a free loopback port.

Used by the sandbox simulators' in-process helpers (tests, demo) and by tests that need a small
receiver (for example a webhook endpoint). The socket is bound before uvicorn starts, so the
port is known without racing another process for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import uvicorn


class _Server(uvicorn.Server):
    """uvicorn, plus a hook that runs (in the loop) when a stop is requested by signal.

    `embedded=True` leaves the host process's signal handlers alone (tests, in-process demo).
    """

    def __init__(self, config: uvicorn.Config, *, on_stop: Callable[[], None] | None = None, embedded: bool = False):
        super().__init__(config)
        self._on_stop = on_stop
        self._embedded = embedded
        self._loop: asyncio.AbstractEventLoop | None = None

    @contextlib.contextmanager
    def capture_signals(self):  # type: ignore[override]
        if self._embedded:
            yield
        else:
            with super().capture_signals():
                yield

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        self._loop = asyncio.get_running_loop()
        await super().startup(sockets=sockets)

    def handle_exit(self, sig, frame) -> None:
        if self._on_stop is not None and self._loop is not None:
            self._loop.call_soon_threadsafe(self._on_stop)
        super().handle_exit(sig, frame)


def serve_forever(
    app,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    on_stop: Callable[[], None] | None = None,
    log_level: str = "info",
    announce: Callable[[str], None] = lambda url: print(url, flush=True),
) -> None:
    """Serve `app` in the foreground until SIGINT/SIGTERM; `announce` gets the URL once bound."""
    sock = bind_socket(host, port)
    bound_port = sock.getsockname()[1]
    config = uvicorn.Config(app, host=host, port=bound_port, log_level=log_level, timeout_graceful_shutdown=2)
    announce(f"http://{host}:{bound_port}")
    asyncio.run(_Server(config, on_stop=on_stop).serve(sockets=[sock]))


@dataclass
class ServedApp:
    url: str
    host: str
    port: int
    server: uvicorn.Server


def bind_socket(host: str = "127.0.0.1", port: int = 0) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(128)
    sock.setblocking(False)
    return sock


@contextlib.asynccontextmanager
async def serve_in_background(
    app,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    startup_timeout: float = 10.0,
    graceful_shutdown_seconds: float = 2.0,
    before_shutdown: Callable[[], None] | None = None,
    log_level: str = "warning",
) -> AsyncIterator[ServedApp]:
    """Serve `app` until the block exits; `before_shutdown` runs first (e.g. to end long requests)."""
    sock = bind_socket(host, port)
    bound_port = sock.getsockname()[1]
    config = uvicorn.Config(
        app,
        host=host,
        port=bound_port,
        log_level=log_level,
        lifespan="on",
        access_log=False,
        timeout_graceful_shutdown=graceful_shutdown_seconds,
    )
    server = _Server(config, embedded=True)
    task = asyncio.create_task(server.serve(sockets=[sock]), name=f"uvicorn:{host}:{bound_port}")
    try:
        deadline = time.monotonic() + startup_timeout
        while not server.started:
            if task.done():
                task.result()  # re-raise the startup failure
                raise RuntimeError("uvicorn exited during startup")
            if time.monotonic() > deadline:
                raise TimeoutError(f"server on port {bound_port} did not start in {startup_timeout}s")
            await asyncio.sleep(0.01)
        yield ServedApp(url=f"http://{host}:{bound_port}", host=host, port=bound_port, server=server)
    finally:
        if before_shutdown is not None:
            before_shutdown()
        server.should_exit = True
        try:
            await asyncio.wait_for(asyncio.shield(task), timeout=graceful_shutdown_seconds + 5)
        except (asyncio.TimeoutError, TimeoutError):
            server.force_exit = True
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        except Exception:  # noqa: BLE001 - a server crash must not mask the test's own error
            pass
        finally:
            sock.close()
