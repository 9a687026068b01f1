"""Vima collector API client: API key, timeouts, cursor paging, retries on 429/5xx.

Two cursors: ``update`` walks the provider's change feed (every creation and every change takes
the next ``operation_update_id``), which is what scheduled syncs follow; ``create`` walks
operations in creation order inside a date range, which is what backfills use.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx

log = logging.getLogger("payops.connectors.vima")

OPERATIONS_PATH = "/collector1/api/v1/operation"
CursorKind = Literal["create", "update"]
CURSOR_PARAM: dict[str, str] = {"create": "operation_create_id", "update": "operation_update_id"}
RETRYABLE_STATUS = frozenset({429, 500, 502, 503, 504})


class VimaError(Exception):
    """The provider could not be read right now (retryable at the caller's level)."""


class VimaAuthError(VimaError):
    """The API key was refused: retrying will not help."""


class VimaRequestError(VimaError):
    """The provider refused the request as malformed: retrying will not help."""


@dataclass(frozen=True, slots=True)
class VimaPage:
    operations: list[dict[str, Any]]
    cursor: int  # where the next page starts
    has_more: bool
    total: int | None = None


@dataclass
class VimaClient:
    base_url: str
    api_key: str
    timeout: float = 15.0
    max_retries: int = 8
    retry_after_cap: float = 30.0
    backoff_initial: float = 0.5
    # Injected so an activity can heartbeat while it waits out a Retry-After.
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    http: httpx.AsyncClient | None = None
    retries_taken: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        self._own_http = self.http is None
        if self.http is None:
            self.http = httpx.AsyncClient(
                base_url=self.base_url.rstrip("/"),
                timeout=httpx.Timeout(self.timeout, connect=min(self.timeout, 5.0)),
                headers={"X-Api-Key": self.api_key, "Accept": "application/json"},
            )

    async def aclose(self) -> None:
        if self._own_http and self.http is not None:
            await self.http.aclose()

    async def __aenter__(self) -> "VimaClient":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def _retry_delay(self, attempt: int, response: httpx.Response | None) -> float:
        if response is not None and (value := response.headers.get("Retry-After")):
            try:
                return min(max(float(value), 0.0), self.retry_after_cap)
            except ValueError:
                pass  # an HTTP date: fall back to our own backoff
        return min(self.backoff_initial * 2**attempt, self.retry_after_cap) * (0.5 + random.random() / 2)

    async def fetch_page(
        self,
        kind: CursorKind,
        cursor: int,
        *,
        limit: int = 1000,
        date_from: str | None = None,
        date_to: str | None = None,
        project: str | None = None,
        status: str | None = None,
        with_total: bool = False,
    ) -> VimaPage:
        params: dict[str, Any] = {CURSOR_PARAM[kind]: cursor, "limit": limit}
        for key, value in (("date_from", date_from), ("date_to", date_to), ("project", project), ("status", status)):
            if value:
                params[key] = value
        if with_total:
            params["with_total"] = 1
        assert self.http is not None
        for attempt in range(self.max_retries + 1):
            response: httpx.Response | None = None
            try:
                response = await self.http.get(OPERATIONS_PATH, params=params)
            except httpx.TransportError as exc:  # timeouts, resets, refused connections
                problem = f"{type(exc).__name__}: {exc}"
            else:
                if response.status_code == 200:
                    return self._page(kind, cursor, response.json())
                if response.status_code == 401 or response.status_code == 403:
                    raise VimaAuthError(f"Vima refused the API key ({response.status_code})")
                if response.status_code not in RETRYABLE_STATUS:
                    raise VimaRequestError(f"Vima answered {response.status_code}: {response.text[:200]}")
                problem = f"HTTP {response.status_code}"
            if attempt == self.max_retries:
                raise VimaError(f"Vima unavailable after {self.max_retries + 1} attempts (last: {problem})")
            delay = self._retry_delay(attempt, response)
            self.retries_taken += 1
            log.info("vima %s; retrying in %.2fs (attempt %d)", problem, delay, attempt + 1)
            await self.sleep(delay)
        raise AssertionError("unreachable")

    @staticmethod
    def _page(kind: CursorKind, cursor: int, body: dict[str, Any]) -> VimaPage:
        meta = body.get("meta") or {}
        data = body.get("data") or []
        next_cursor = meta.get(f"next_{CURSOR_PARAM[kind]}")
        if next_cursor is None:
            next_cursor = data[-1][CURSOR_PARAM[kind]] if data else cursor
        return VimaPage(operations=data, cursor=int(next_cursor), has_more=bool(meta.get("has_more")),
                        total=meta.get("total"))
