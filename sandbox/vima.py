"""The sandbox Vima collector: an honest simulator of the Vima/Finmar collector REST API.

It shares no code with payops's product packages (core/, connectors/, ...): a test that passes
against it proves the Vima connector and normalizer speak the provider's protocol.

API
---
``GET /collector1/api/v1/operation``  operations, authenticated by ``X-Api-Key``.

    Filters: ``date_from`` / ``date_to`` (ISO date or datetime on ``created_at``; a bare
    ``date_to`` date includes that whole day), ``project``, ``status`` (``current_status``).
    Cursor pagination, one of:
      ``operation_create_id=N``  operations created after N, in creation order (backfills);
      ``operation_update_id=N``  operations changed after N, in change order (the change feed:
                                 every creation and every later change takes the next update id).
    ``limit`` (default 100, max ``max_page_size``); ``with_total=1`` adds the filter's total.

    200 ``{"status": "ok", "data": [...], "meta": {"count", "limit", "has_more",
    "next_operation_create_id", "next_operation_update_id", "total"?}}``;
    401 bad key; 400 bad parameters; 429 with ``Retry-After`` (seconds) when throttled;
    occasional 5xx (``error_rate``, or injected).

Operation fields: operation_id, operation_create_id, operation_update_id, client_operation_id,
reference_id, project, complete_amount (decimal string), complete_currency, fee_amount,
current_status (success|fail|pending|processing|refund), payment_status
(completed|declined|in_progress|refunded), payment_method, payer_email, payer_name, payer_id,
payer_phone, payer_country, created_at / updated_at (ISO 8601 with the provider's +03:00 offset).

Test controls (``/_sandbox``): ``POST generate`` ``{"count", "days"?, "end"?}``,
``POST update`` ``{"count", "shift_created_hours"?}``, ``POST faults`` ``{"mode": "429"|"5xx"|"stale",
"count", "retry_after"?}``, ``POST rate_limit`` ``{"per_second", "burst"?}``, ``GET stats``,
``GET operations/{operation_id}``, ``POST edit`` ``{"operation_id", "fields": {...}}`` (sets the
fields as given, any text included, and the operation takes the next update id).

Fault ``stale``: the next ``count`` pages are served as a lagging replica would, late: each
operation on the page as its first version (older ``operation_update_id``/``updated_at``), while
the page's cursors are the current ones.

Demo mode (``--world-seed N``): the operations are the demo's shared payments (sandbox/world.py),
INR, revealed as their time comes and settled when they settle; the PayShack portal started with
the same seed lists the same payments, but for a realistic few discrepancies.

Everything is deterministic from ``seed``: the same seed and the same calls give the same data.

Run it: ``python -m sandbox.vima --port 8091 --operations 1000 --trickle 2``.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import contextlib
import random
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from sandbox.serving import serve_forever, serve_in_background
from sandbox.world import Payment, World

DEFAULT_API_KEY = "vima-dev-api-key"
PROVIDER_TZ = timezone(timedelta(hours=3))  # Vima reports times in its own zone, with the offset
PROJECTS = ("monetix", "caroussel", "91game", "starbet", "luckyjet")
CURRENCIES = (("INR", 2, 100, 5_000_000), ("USD", 2, 500, 200_000), ("EUR", 2, 500, 150_000), ("KWD", 3, 1_000, 100_000))
CURRENCY_WEIGHTS = (70, 15, 10, 5)
METHODS = ("upi", "card", "netbanking", "wallet")
FIRST = ("Aarav", "Diya", "Ivan", "Olga", "Rahul", "Priya", "John", "Maria", "Chen", "Fatima")
LAST = ("Sharma", "Patel", "Petrov", "Ivanova", "Singh", "Gupta", "Smith", "Garcia", "Wang", "Khan")
PAYMENT_STATUS = {"success": "completed", "fail": "declined", "pending": "in_progress",
                  "processing": "in_progress", "refund": "refunded"}


@dataclass
class VimaConfig:
    api_key: str = DEFAULT_API_KEY
    seed: int = 7
    initial_operations: int = 0
    days: float = 7.0  # generated operations' created_at spread over the last `days` days
    trickle_interval: float = 0.0  # seconds between trickle ticks; 0 = no trickle
    trickle_new: int = 5
    trickle_updates: int = 3
    rate_limit_per_second: float = 0.0  # 0 = unlimited; otherwise a token bucket answering 429
    rate_limit_burst: int = 20
    retry_after_seconds: int = 1
    error_rate: float = 0.0  # fraction of requests answered 5xx
    max_page_size: int = 1000
    invalid_every: int = 0  # every Nth generated operation has a defect (for quarantine tests)
    # The demo's shared payments (sandbox/world.py): with a world seed, the operations are the
    # world's from `world_since` on (revealed as their time comes, settled when they settle),
    # instead of generated ones; PayShack started with the same seed lists the same payments.
    world_seed: int | None = None
    world_since: datetime | None = None  # default: the last `days` days
    world_interval_seconds: float | None = None  # default: the world's
    world_block: int | None = None  # default: the world's


def _iso(ts: datetime) -> str:
    return ts.astimezone(PROVIDER_TZ).isoformat(timespec="seconds")


class VimaState:
    def __init__(self, config: VimaConfig) -> None:
        self.config = config
        self.rng = random.Random(config.seed)
        self.fault_rng = random.Random(config.seed + 1)
        self.ops: list[dict[str, Any]] = []  # index = operation_create_id - 1
        self.created: list[datetime] = []  # parallel to ops, for date filters without parsing
        self.feed_ids: list[int] = []  # update ids in increasing order
        self.feed_ops: list[int] = []  # parallel: index into ops
        self.versions: list[list[dict[str, Any]]] = []  # parallel to ops: every version served so far
        self.update_seq = 0
        self.faults: list[tuple[str, int]] = []  # (mode, retry_after)
        self.tokens = float(config.rate_limit_burst)
        self.tokens_at = time.monotonic()
        self.stats = {"requests": 0, "throttled": 0, "errors": 0, "served_operations": 0}
        self.clock_offset = 0  # generated ops never share a second, so ordering is stable
        self.world: World | None = None
        self.world_until: datetime | None = None  # payments before this are revealed
        self.unsettled: list[tuple[int, Payment]] = []  # (index into ops, payment) still pending
        self.by_operation_id: dict[int, int] = {}  # world operations: operation_id -> index into ops
        if config.world_seed is not None:
            kwargs: dict[str, Any] = {}
            if config.world_interval_seconds:
                kwargs["interval_seconds"] = config.world_interval_seconds
            if config.world_block:
                kwargs["block"] = config.world_block
            self.world = World(config.world_seed, **kwargs)
            self.world_until = config.world_since or datetime.now(timezone.utc) - timedelta(days=config.days)

    # --- the shared world (demo) --------------------------------------------------------------

    def reveal(self, until: datetime | None = None) -> list[int]:
        """The world's payments up to `until` (default now) become operations, and the pending ones
        whose time has come settle (each a new version in the change feed)."""
        assert self.world is not None and self.world_until is not None, "no world_seed configured"
        until = until or datetime.now(timezone.utc)
        new_ids: list[int] = []
        for p in self.world.between(self.world_until, until):
            if not p.on_vima:
                continue
            status = p.status_at("vima", until)
            exp_amount = f"{p.amount_minor // 100}.{p.amount_minor % 100:02d}"
            seq = len(self.ops) + 1
            op = {
                "operation_id": p.index,  # the payment's own number: the same after a restart
                "operation_create_id": seq,
                "operation_update_id": 0,
                "client_operation_id": p.key,
                "reference_id": f"ref_{p.index:016x}",
                "project": p.project,
                "complete_amount": exp_amount,
                "complete_currency": "INR",
                "fee_amount": f"{p.fee_minor // 100}.{p.fee_minor % 100:02d}",
                "current_status": status,
                "payment_status": PAYMENT_STATUS[status],
                "payment_method": p.method,
                "payer_email": p.payer_email,
                "payer_name": p.payer_name,
                "payer_id": p.payer_vpa,
                "payer_phone": f"+91{7000000000 + p.index % 2999999999}",
                "payer_country": "IN",
                "created_at": _iso(p.at),
                "updated_at": _iso(p.settles_at if status != "pending" and p.settles_at else p.at),
            }
            self.ops.append(op)
            self.created.append(p.at)
            self.by_operation_id[p.index] = seq - 1
            self._touch(seq - 1)
            new_ids.append(op["operation_id"])
            if status == "pending" and p.settles_at is not None:
                self.unsettled.append((seq - 1, p))
        self.world_until = max(self.world_until, until)
        still: list[tuple[int, Payment]] = []
        for index, p in self.unsettled:
            if p.settles_at is not None and p.settles_at <= until:
                op = self.ops[index]
                op["current_status"] = p.vima_status
                op["payment_status"] = PAYMENT_STATUS[p.vima_status]
                op["updated_at"] = _iso(p.settles_at)
                self._touch(index)
            else:
                still.append((index, p))
        self.unsettled = still
        return new_ids

    # --- data -------------------------------------------------------------------------------

    def _touch(self, index: int) -> None:
        self.update_seq += 1
        op = self.ops[index]
        op["operation_update_id"] = self.update_seq
        self.feed_ids.append(self.update_seq)
        self.feed_ops.append(index)
        while len(self.versions) <= index:
            self.versions.append([])
        self.versions[index].append(dict(op))

    def edit(self, operation_id: int, fields: dict[str, Any]) -> dict[str, Any]:
        """Set fields of one operation exactly as given (bad data included): a new version."""
        index = self.by_operation_id.get(operation_id, operation_id - 50_000_001)
        op = self.ops[index]
        op.update(fields)
        if "updated_at" not in fields:
            op["updated_at"] = _iso(max(datetime.now(timezone.utc).replace(microsecond=0), self.created[index]))
        self._touch(index)
        return dict(op)

    def generate(self, count: int, *, end: datetime | None = None, days: float | None = None) -> list[int]:
        rng = self.rng
        end = end or datetime.now(timezone.utc)
        span = (days if days is not None else self.config.days) * 86400.0
        offsets = sorted(rng.random() * span for _ in range(count))
        new_ids = []
        for off in reversed(offsets):  # oldest first, so creation order follows time
            seq = len(self.ops) + 1
            created = (end - timedelta(seconds=off)).replace(microsecond=0)
            currency, exp, lo, hi = rng.choices(CURRENCIES, CURRENCY_WEIGHTS)[0]
            minor = rng.randint(lo, hi)
            amount = f"{minor // 10**exp}.{minor % 10**exp:0{exp}d}"
            fee = minor * 2 // 100
            status = rng.choices(("success", "fail", "pending", "processing"), (60, 12, 20, 8))[0]
            first, last = rng.choice(FIRST), rng.choice(LAST)
            project = rng.choice(PROJECTS)
            op = {
                "operation_id": 50_000_000 + seq,
                "operation_create_id": seq,
                "operation_update_id": 0,
                "client_operation_id": f"{project[:3]}-{seq:08d}-{rng.getrandbits(24):06x}",
                "reference_id": f"ref_{rng.getrandbits(64):016x}",
                "project": project,
                "complete_amount": amount,
                "complete_currency": currency,
                "fee_amount": f"{fee // 10**exp}.{fee % 10**exp:0{exp}d}",
                "current_status": status,
                "payment_status": PAYMENT_STATUS[status],
                "payment_method": rng.choice(METHODS),
                "payer_email": f"{first.lower()}.{last.lower()}{rng.randint(1, 999)}@example.com",
                "payer_name": f"{first} {last}",
                "payer_id": f"payer_{rng.getrandbits(32):08x}",
                "payer_phone": f"+91{rng.randint(7000000000, 9999999999)}",
                "payer_country": "IN" if currency == "INR" else rng.choice(("GB", "DE", "KW", "US")),
                "created_at": _iso(created),
                "updated_at": _iso(created),
            }
            n = self.config.invalid_every
            if n and seq % n == 0:
                defect = rng.choice(("currency", "amount", "created_at"))
                if defect == "currency":
                    op["complete_currency"] = "XXX"
                elif defect == "amount":
                    op["complete_amount"] = "-" + amount
                else:
                    op["created_at"] = "not-a-date"
            self.ops.append(op)
            self.created.append(created)
            self._touch(seq - 1)
            new_ids.append(op["operation_id"])
        return new_ids

    def update(self, count: int, *, shift_created_hours: float = 0.0) -> list[int]:
        """Advance `count` operations: pending ones settle first, then successes get refunded."""
        changed: list[int] = []
        now = datetime.now(timezone.utc).replace(microsecond=0)
        open_ = [i for i, op in enumerate(self.ops) if op["current_status"] in ("pending", "processing")]
        done = [i for i, op in enumerate(self.ops) if op["current_status"] == "success"]
        picks = open_[:count]
        if len(picks) < count:
            picks += done[: count - len(picks)]
        for i in picks:
            op = self.ops[i]
            if op["current_status"] in ("pending", "processing"):
                op["current_status"] = self.rng.choices(("success", "fail"), (85, 15))[0]
            else:
                op["current_status"] = "refund"
            op["payment_status"] = PAYMENT_STATUS[op["current_status"]]
            if shift_created_hours:
                # the provider corrected the operation's time (rare, but it happens)
                self.created[i] = self.created[i] + timedelta(hours=shift_created_hours)
                op["created_at"] = _iso(self.created[i])
            op["updated_at"] = _iso(max(now, self.created[i]))
            self._touch(i)
            changed.append(op["operation_id"])
        return changed

    # --- faults -----------------------------------------------------------------------------

    def throttle(self) -> Response | None:
        cfg = self.config
        if self.faults and self.faults[0][0] == "stale":
            return None  # not a refusal: `query` serves the page late
        if self.faults:
            mode, retry_after = self.faults.pop(0)
            if mode == "429":
                self.stats["throttled"] += 1
                return JSONResponse({"status": "error", "error": "rate_limited"}, 429,
                                    headers={"Retry-After": str(retry_after)})
            self.stats["errors"] += 1
            return JSONResponse({"status": "error", "error": "internal_error"}, 503)
        if cfg.rate_limit_per_second > 0:
            now = time.monotonic()
            self.tokens = min(cfg.rate_limit_burst, self.tokens + (now - self.tokens_at) * cfg.rate_limit_per_second)
            self.tokens_at = now
            if self.tokens < 1:
                self.stats["throttled"] += 1
                return JSONResponse({"status": "error", "error": "rate_limited"}, 429,
                                    headers={"Retry-After": str(cfg.retry_after_seconds)})
            self.tokens -= 1
        if cfg.error_rate and self.fault_rng.random() < cfg.error_rate:
            self.stats["errors"] += 1
            return JSONResponse({"status": "error", "error": "bad_gateway"}, 502)
        return None

    # --- queries ----------------------------------------------------------------------------

    def query(self, params: dict[str, Any]) -> dict[str, Any]:
        limit, date_from, date_to = params["limit"], params["date_from"], params["date_to"]
        project, status = params["project"], params["status"]

        def matches(i: int) -> bool:
            op = self.ops[i]
            if project and op["project"] != project:
                return False
            if status and op["current_status"] != status:
                return False
            created = self.created[i]
            if date_from and created < date_from:
                return False
            if date_to and created >= date_to:
                return False
            return True

        if params["update_cursor"] is not None:
            start = bisect.bisect_right(self.feed_ids, params["update_cursor"])
            candidates = (
                self.feed_ops[k] for k in range(start, len(self.feed_ids))
                # a superseded feed entry: the operation changed again later
                if self.ops[self.feed_ops[k]]["operation_update_id"] == self.feed_ids[k]
            )
        else:
            candidates = iter(range(params["create_cursor"] or 0, len(self.ops)))
        page: list[int] = []
        has_more = False
        for i in candidates:
            if not matches(i):
                continue
            if len(page) == limit:
                has_more = True
                break
            page.append(i)
        data = [dict(self.ops[i]) for i in page]
        last = data[-1] if data else None
        if self.faults and self.faults[0][0] == "stale":
            self.faults.pop(0)
            data = [dict(self.versions[i][0]) for i in page]
        meta: dict[str, Any] = {
            "count": len(data),
            "limit": limit,
            "has_more": has_more,
            "next_operation_create_id": last["operation_create_id"] if last else params["create_cursor"],
            "next_operation_update_id": last["operation_update_id"] if last else params["update_cursor"],
        }
        if params["with_total"]:
            meta["total"] = sum(1 for i in range(len(self.ops)) if matches(i))
        self.stats["served_operations"] += len(data)
        return {"status": "ok", "data": data, "meta": meta}


def _parse_bound(value: str | None, *, end: bool) -> datetime | None:
    if not value:
        return None
    if len(value) == 10:
        d = date.fromisoformat(value)
        ts = datetime(d.year, d.month, d.day, tzinfo=timezone.utc)
        return ts + timedelta(days=1) if end else ts
    ts = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return ts if ts.tzinfo else ts.replace(tzinfo=timezone.utc)


def _bad_request(message: str) -> JSONResponse:
    return JSONResponse({"status": "error", "error": "bad_request", "message": message}, 400)


def _state(request: Request) -> VimaState:
    return request.app.state.vima


async def list_operations(request: Request) -> Response:
    state = _state(request)
    state.stats["requests"] += 1
    if request.headers.get("x-api-key") != state.config.api_key:
        return JSONResponse({"status": "error", "error": "unauthorized", "message": "invalid API key"}, 401)
    refused = state.throttle()
    if refused is not None:
        return refused
    q = request.query_params
    try:
        limit = int(q.get("limit", "100"))
        create_cursor = int(q["operation_create_id"]) if "operation_create_id" in q else None
        update_cursor = int(q["operation_update_id"]) if "operation_update_id" in q else None
        date_from = _parse_bound(q.get("date_from"), end=False)
        date_to = _parse_bound(q.get("date_to"), end=True)
    except ValueError as exc:
        return _bad_request(f"invalid parameter: {exc}")
    if not 1 <= limit <= state.config.max_page_size:
        return _bad_request(f"limit must be between 1 and {state.config.max_page_size}")
    if create_cursor is not None and update_cursor is not None:
        return _bad_request("use one cursor: operation_create_id or operation_update_id")
    body = state.query({
        "limit": limit, "create_cursor": create_cursor, "update_cursor": update_cursor,
        "date_from": date_from, "date_to": date_to, "project": q.get("project"),
        "status": q.get("status"), "with_total": q.get("with_total") in ("1", "true"),
    })
    return JSONResponse(body)


async def _json(request: Request) -> dict[str, Any]:
    raw = await request.body()
    if not raw:
        return {}
    import json

    return json.loads(raw)


async def generate(request: Request) -> Response:
    body = await _json(request)
    end = _parse_bound(body.get("end"), end=False)
    ids = _state(request).generate(int(body.get("count", 1)), end=end, days=body.get("days"))
    return JSONResponse({"created": len(ids), "first_operation_id": ids[0] if ids else None})


async def update(request: Request) -> Response:
    body = await _json(request)
    ids = _state(request).update(int(body.get("count", 1)), shift_created_hours=float(body.get("shift_created_hours", 0)))
    return JSONResponse({"updated": ids})


async def faults(request: Request) -> Response:
    body = await _json(request)
    mode = str(body.get("mode"))
    if mode not in ("429", "5xx", "stale"):
        return _bad_request("mode must be '429', '5xx' or 'stale'")
    state = _state(request)
    state.faults.extend([(mode, int(body.get("retry_after", state.config.retry_after_seconds)))] * int(body.get("count", 1)))
    return JSONResponse({"pending_faults": len(state.faults)})


async def edit(request: Request) -> Response:
    body = await _json(request)
    state = _state(request)
    operation_id = int(body.get("operation_id", 0))
    if not 0 <= operation_id - 50_000_001 < len(state.ops):
        return JSONResponse({"status": "error", "error": "not_found"}, 404)
    return JSONResponse(state.edit(operation_id, dict(body.get("fields") or {})))


async def rate_limit(request: Request) -> Response:
    body = await _json(request)
    state = _state(request)
    state.config.rate_limit_per_second = float(body.get("per_second", 0))
    state.config.rate_limit_burst = int(body.get("burst", state.config.rate_limit_burst))
    state.tokens, state.tokens_at = float(state.config.rate_limit_burst), time.monotonic()
    return JSONResponse({"per_second": state.config.rate_limit_per_second, "burst": state.config.rate_limit_burst})


async def stats(request: Request) -> Response:
    state = _state(request)
    return JSONResponse({**state.stats, "operations": len(state.ops), "last_update_id": state.update_seq,
                         "pending_faults": len(state.faults)})


async def operation(request: Request) -> Response:
    state = _state(request)
    index = int(request.path_params["operation_id"]) - 50_000_001
    if not 0 <= index < len(state.ops):
        return JSONResponse({"status": "error", "error": "not_found"}, 404)
    return JSONResponse(state.ops[index])


async def health(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


def create_vima_app(config: VimaConfig | None = None) -> Starlette:
    state = VimaState(config or VimaConfig())
    if state.world is not None:
        state.reveal()
    elif state.config.initial_operations:
        state.generate(state.config.initial_operations)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        task = None
        if state.config.trickle_interval > 0:
            async def trickle() -> None:
                while True:
                    await asyncio.sleep(state.config.trickle_interval)
                    if state.world is not None:
                        state.reveal()
                        continue
                    state.generate(state.config.trickle_new, days=state.config.trickle_interval / 86400)
                    state.update(state.config.trickle_updates)

            task = asyncio.create_task(trickle())
        try:
            yield
        finally:
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    app = Starlette(
        routes=[
            Route("/health", health, methods=["GET"]),
            Route("/collector1/api/v1/operation", list_operations, methods=["GET"]),
            Route("/_sandbox/generate", generate, methods=["POST"]),
            Route("/_sandbox/update", update, methods=["POST"]),
            Route("/_sandbox/faults", faults, methods=["POST"]),
            Route("/_sandbox/edit", edit, methods=["POST"]),
            Route("/_sandbox/rate_limit", rate_limit, methods=["POST"]),
            Route("/_sandbox/stats", stats, methods=["GET"]),
            Route("/_sandbox/operations/{operation_id:int}", operation, methods=["GET"]),
        ],
        lifespan=lifespan,
    )
    app.state.vima = state
    return app


@dataclass
class RunningVima:
    url: str
    app: Starlette
    state: VimaState = field(repr=False)


@contextlib.asynccontextmanager
async def running_vima(config: VimaConfig | None = None, *, host: str = "127.0.0.1", port: int = 0) -> AsyncIterator[RunningVima]:
    """Serve a sandbox Vima in this event loop on a free loopback port until the block exits."""
    app = create_vima_app(config)
    async with serve_in_background(app, host=host, port=port) as served:
        yield RunningVima(url=served.url, app=app, state=app.state.vima)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m sandbox.vima", description="Run the sandbox Vima collector API.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port (printed on start)")
    parser.add_argument("--api-key", default=DEFAULT_API_KEY)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--operations", type=int, default=1000, help="operations generated at start")
    parser.add_argument("--days", type=float, default=7.0, help="spread of the generated operations")
    parser.add_argument("--trickle", type=float, default=5.0, help="seconds between new/updated operations; 0 = off")
    parser.add_argument("--rate-limit", type=float, default=0.0, help="requests per second before 429; 0 = off")
    parser.add_argument("--error-rate", type=float, default=0.0, help="fraction of requests answered 5xx")
    parser.add_argument("--world-seed", type=int, default=None,
                        help="serve the demo's shared payments (sandbox/world.py) of this seed instead of generated ones")
    parser.add_argument("--world-since", default=None,
                        help="ISO time the shared payments start at (default: --days ago)")
    parser.add_argument("--log-level", default="info")
    args = parser.parse_args(argv)
    config = VimaConfig(
        api_key=args.api_key, seed=args.seed, initial_operations=args.operations, days=args.days,
        trickle_interval=args.trickle, rate_limit_per_second=args.rate_limit, error_rate=args.error_rate,
        world_seed=args.world_seed,
        world_since=_parse_bound(args.world_since, end=False) if args.world_since else None,
    )
    serve_forever(create_vima_app(config), host=args.host, port=args.port, log_level=args.log_level,
                  announce=lambda url: print(f"sandbox vima listening on {url}", flush=True))


if __name__ == "__main__":
    main()
