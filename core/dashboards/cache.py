"""Short-lived Redis snapshots of dashboard answers, invalidated when new data arrives.

Keys carry a generation number: new data (a transactions batch, a payout change) bumps the
generation, so every snapshot taken before it is unreachable at once — no scan, no delete, no
race. A reader reads the generation *before* it queries the database (one round trip with the
lookup, in a Lua script), so a snapshot stored under generation g never predates data whose bump
made the generation g: the worst case is a fresher answer stored under an older generation.
The TTL bounds staleness if a bump is ever lost (pub/sub is best effort). Concurrent misses for
the same key in one process share one computation (single flight).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Awaitable, Callable

from redis.asyncio import Redis

log = logging.getLogger("payops.dashboard.cache")

_LOOKUP = """
local gen = redis.call('GET', KEYS[1]) or '0'
return {gen, redis.call('GET', ARGV[1] .. gen .. ':' .. ARGV[2])}
"""


class SnapshotCache:
    def __init__(self, redis: Redis | None, *, ttl_seconds: float, namespace: str) -> None:
        self._redis = redis
        self._ttl = ttl_seconds
        # one namespace per database, so deployments (and test databases) sharing a Redis never mix
        self._prefix = f"payops:dash:{hashlib.sha1(namespace.encode()).hexdigest()[:12]}:"
        self._gen_key = self._prefix + "gen"
        self._lookup = redis.register_script(_LOOKUP) if redis is not None else None
        self._inflight: dict[str, asyncio.Future[bytes]] = {}

    @property
    def enabled(self) -> bool:
        return self._redis is not None and self._ttl > 0

    async def get_or_compute(self, key: str, compute: Callable[[], Awaitable[bytes]]) -> tuple[bytes, bool]:
        """(value, hit). Redis trouble degrades to computing, never to an error."""
        if not self.enabled:
            return await compute(), False
        try:
            gen, cached = await self._lookup(keys=[self._gen_key], args=[self._prefix, key])
        except Exception as exc:  # noqa: BLE001
            log.warning("dashboard cache unavailable: %s", exc)
            return await compute(), False
        if cached is not None:
            return cached, True
        full = f"{self._prefix}{gen.decode() if isinstance(gen, bytes) else gen}:{key}"
        running = self._inflight.get(full)
        if running is not None:
            return await asyncio.shield(running), False
        fut: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._inflight[full] = fut
        try:
            value = await compute()
            fut.set_result(value)
        except BaseException as exc:
            fut.set_exception(exc)
            fut.exception()  # retrieved: waiters re-raise it, nobody logs "never retrieved"
            raise
        finally:
            self._inflight.pop(full, None)
        try:
            await self._redis.set(full, value, px=int(self._ttl * 1000))  # type: ignore[union-attr]
        except Exception as exc:  # noqa: BLE001
            log.warning("could not store a dashboard snapshot: %s", exc)
        return value, False

    async def invalidate(self) -> None:
        if self._redis is None:
            return
        try:
            await self._redis.incr(self._gen_key)
        except Exception as exc:  # noqa: BLE001
            log.warning("could not invalidate dashboard snapshots: %s", exc)
