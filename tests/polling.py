"""Waiting for a condition in tests: poll it until it holds or a deadline passes (never a bare
sleep that hopes the system got there)."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import Any


async def wait_until(
    condition: Callable[[], Any | Awaitable[Any]],
    timeout: float = 5.0,
    interval: float = 0.01,
    what: str = "condition",
) -> Any:
    """The condition's first truthy value (it may be sync or async); AssertionError after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not met within {timeout}s")
        await asyncio.sleep(interval)


async def eventually(check: Callable[[], Any | Awaitable[Any]], what: str, timeout: float = 20.0) -> Any:
    """wait_until for the workflow tests: what is awaited first, a 20 s deadline, 50 ms polls."""
    return await wait_until(check, timeout=timeout, interval=0.05, what=what)
