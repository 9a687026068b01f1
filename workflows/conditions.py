"""Waiting inside a workflow: the one `wait_until` the workflows share (deterministic: a
workflow condition raced against a durable timer)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import timedelta

from temporalio import workflow


async def wait_until(condition: Callable[[], bool], timeout: timedelta) -> bool:
    """True when `condition` became true, False when the (durable) timer ran out first."""
    try:
        await workflow.wait_condition(condition, timeout=timeout)
        return True
    except asyncio.TimeoutError:
        return False
