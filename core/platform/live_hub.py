"""Live updates: one Redis pub/sub subscription per API process, fanned out to its WebSocket and
SSE clients. Every process subscribes to the same channels, so a client sees every update
whichever process it is connected to. New data on the transactions or payouts channels also
invalidates the dashboard snapshots.

Tenant filtering happens here, per client: a merchant user receives only messages that carry
its own `merchant_id`; sync and ops-action messages go to platform roles with the permission.
A slow client never slows the others: its queue is bounded and drops its oldest message.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from redis.asyncio import Redis

from core.platform.auth_tokens import Principal
from core.platform.roles import Permission

log = logging.getLogger("payops.live")

ALERT_UPDATES_CHANNEL = "payops:updates:alerts"

CHANNELS: dict[str, str] = {
    "transactions": "payops:updates:transactions",
    "payouts": "payops:updates:payouts",
    "ops_actions": "payops:updates:ops_actions",
    "alerts": ALERT_UPDATES_CHANNEL,
    "sync": "payops:updates:sync",
}
_BY_REDIS_NAME = {v: k for k, v in CHANNELS.items()}
DATA_CHANNELS = frozenset({"transactions", "payouts"})

# what a principal needs to receive a channel at all
_CHANNEL_PERMISSION = {
    "transactions": Permission.DASHBOARD_READ,
    "payouts": Permission.PAYOUTS_READ,
    "ops_actions": Permission.OPS_ACTIONS_READ,
    "alerts": Permission.DASHBOARD_READ,
    "sync": Permission.DASHBOARD_READ,
}
_PLATFORM_ONLY = frozenset({"ops_actions", "sync"})


def allowed_channels(principal: Principal, wanted: list[str] | None) -> list[str]:
    names = wanted or list(CHANNELS)
    unknown = [n for n in names if n not in CHANNELS]
    if unknown:
        raise ValueError(f"unknown channel(s): {', '.join(unknown)}; use {', '.join(CHANNELS)}")
    perms = principal.permissions
    return [n for n in names if _CHANNEL_PERMISSION[n] in perms
            and not (principal.is_merchant_user and n in _PLATFORM_ONLY)]


@dataclass(eq=False)
class Subscription:
    principal: Principal
    channels: set[str]
    queue: asyncio.Queue = field(default_factory=lambda: asyncio.Queue(maxsize=1000))
    dropped: int = 0

    def accepts(self, channel: str, message: dict[str, Any]) -> bool:
        if channel not in self.channels:
            return False
        if self.principal.is_merchant_user:
            return message.get("merchant_id") == self.principal.merchant_id
        return True

    def offer(self, item: dict[str, Any]) -> None:
        if self.queue.full():
            with contextlib.suppress(asyncio.QueueEmpty):
                self.queue.get_nowait()
            self.dropped += 1
        self.queue.put_nowait(item)


class LiveHub:
    def __init__(self, redis: Redis | None, *, on_new_data: Callable[[], Awaitable[None]] | None = None) -> None:
        self._redis = redis
        self._on_new_data = on_new_data
        self._subs: set[Subscription] = set()
        self._task: asyncio.Task | None = None
        self._invalidation: asyncio.Task | None = None
        self._invalidate_again = False
        self.ready = asyncio.Event()

    @property
    def available(self) -> bool:
        return self._redis is not None

    def start(self) -> None:
        if self._redis is not None and self._task is None:
            self._task = asyncio.create_task(self._run(), name="payops-live-hub")

    async def aclose(self) -> None:
        if self._invalidation is not None:
            self._invalidation.cancel()
        if self._task is not None:
            self._task.cancel()
            # bounded: a wedged Redis connection must not hold up the API's shutdown
            await asyncio.wait({self._task}, timeout=2.0)

    def subscribe(self, principal: Principal, channels: list[str]) -> Subscription:
        sub = Subscription(principal, set(channels))
        self._subs.add(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        self._subs.discard(sub)

    def _new_data(self) -> None:
        """Invalidate the dashboard snapshots after new data, coalescing bursts: while one
        invalidation is in flight, any number of further messages cause exactly one more, which
        starts after all of them arrived. A payout burst thus costs a few Redis round trips per
        API process instead of one per transition, and no snapshot computed before the last
        message survives it."""
        if self._invalidation is not None and not self._invalidation.done():
            self._invalidate_again = True
            return
        self._invalidation = asyncio.create_task(self._invalidate(), name="payops-live-invalidate")

    async def _invalidate(self) -> None:
        assert self._on_new_data is not None
        while True:
            self._invalidate_again = False
            await self._on_new_data()
            if not self._invalidate_again:
                return

    async def _run(self) -> None:
        backoff = 0.2
        while True:
            pubsub = self._redis.pubsub()  # type: ignore[union-attr]
            try:
                await pubsub.subscribe(*CHANNELS.values())
                self.ready.set()
                backoff = 0.2
                while True:
                    msg = await pubsub.get_message(ignore_subscribe_messages=True, timeout=5.0)
                    if msg is not None:
                        await self._dispatch(msg)
            except asyncio.CancelledError:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(pubsub.aclose(), 1.0)
                raise
            except Exception as exc:  # noqa: BLE001 — Redis restarts must not end live updates
                self.ready.clear()
                log.warning("live updates: redis subscription lost (%s); retrying in %.1fs", exc, backoff)
                with contextlib.suppress(Exception):
                    await pubsub.aclose()
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)

    async def _dispatch(self, msg: dict[str, Any]) -> None:
        raw_channel = msg["channel"].decode() if isinstance(msg["channel"], bytes) else msg["channel"]
        channel = _BY_REDIS_NAME.get(raw_channel)
        if channel is None:
            return
        if channel in DATA_CHANNELS and self._on_new_data is not None:
            self._new_data()
        if not self._subs:
            return  # nobody to tell: don't even parse it
        try:
            data = json.loads(msg["data"])
        except (TypeError, ValueError):
            return
        if not isinstance(data, dict):
            return
        item = {"channel": channel, "data": data}
        for sub in list(self._subs):
            if sub.accepts(channel, data):
                sub.offer(item)
