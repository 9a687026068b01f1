"""A merchant's webhook receiver for tests: real HTTP, verifies signatures, deduplicates by event id.

It can fail its first N requests (before processing) and fail once after processing chosen
events, the two ways a real receiver fails.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from core.webhooks.signing import SignatureError, verify


@dataclass
class Received:
    event_id: str
    event: dict
    status: int  # what the receiver answered
    attempt: int
    verified: bool
    at: float


@dataclass
class WebhookReceiver:
    secret: str | None = None
    fail_first: int = 0  # answer 500 to the first N requests, without processing them
    fail_after_processing_types: set[str] = field(default_factory=set)  # process, then answer 500 once
    requests: list[Received] = field(default_factory=list)
    processed: dict[str, dict] = field(default_factory=dict)  # event id -> event, applied once

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/hooks", self._receive, methods=["POST"])])

    async def _receive(self, request: Request) -> JSONResponse:
        body = await request.body()
        event = json.loads(body)
        try:
            verify(self.secret or "", request.headers.get("Payops-Signature"), body)
            verified = True
        except SignatureError:
            verified = False
        attempt = int(request.headers.get("Payops-Delivery-Attempt", "0"))
        if len(self.requests) < self.fail_first:
            status = 500
        elif not verified:
            status = 400
        else:
            self.processed.setdefault(event["id"], event)
            status = 200
            if event["type"] in self.fail_after_processing_types:
                self.fail_after_processing_types.discard(event["type"])
                status = 500
        self.requests.append(Received(event["id"], event, status, attempt, verified, time.monotonic()))
        return JSONResponse({"ok": status == 200}, status_code=status)

    def successes(self) -> list[Received]:
        return [r for r in self.requests if r.status == 200]

    async def wait_for(self, predicate, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while not predicate(self):
            assert time.monotonic() < deadline, f"receiver never got what was expected: {self.requests}"
            await asyncio.sleep(0.05)
