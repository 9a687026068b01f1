"""The sandbox PayShack portal: an honest simulator of a merchant portal only a browser can read.

It shares no code with payops's product packages: its encryption, pages and session handling
are its own, so a sync that reads it proves the PayShack fetcher works against a real browser.

Pages
-----
``GET /login``, ``POST /login`` (form: email, password) → a ``PSSESSID`` session cookie and a
redirect to ``/transactions``; a wrong password gets a 401 page with ``#login-error``.
``GET /transactions?page=&page_size=&from=&to=`` → an HTML page whose table is filled by
``/static/payshack-portal.js``: it calls ``GET /api/v2/transactions`` (same parameters), which
answers ``{"status": true, "data": "<CryptoJS AES>"}``, and decrypts it in the page with the key in
``window.__PS_CFG.dataKey``. Without a valid session the page redirects to ``/login`` and the API
answers 401 ``{"error": "session_expired"}``. Sessions expire after ``session_ttl`` seconds.

Decrypted payload: ``{"rows": [...], "page", "page_size", "total", "last_page"}``, newest first;
each row: order_id, transaction_id, utr, amount, paid_amount ("1,500.00"), status
(SUCCESS|FAILED|PENDING|REFUNDED), date ("YYYY-MM-DD HH:MM:SS", India time, no offset),
customer_name, customer_vpa. ``from``/``to`` filter on the date (ISO date or datetime).

Demo mode (``--world-seed N``): the rows are the demo's shared payments (sandbox/world.py), the
same ones the Vima simulator started with the same seed serves, but for a realistic few
discrepancies (missing, underpaid, settled differently, listed twice, order id re-typed); revealed
as their time comes, settled when they settle.

Test controls (``/_sandbox``): ``POST generate`` ``{"count", "days"?}``, ``POST update`` ``{"count"}``,
``POST expire_sessions``, ``POST expire_after`` ``{"api_calls"}`` (expire every session after
that many more API calls), ``GET stats``.

Run it: ``python -m sandbox.payshack --port 8092 --rows 2000``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import hashlib
import html
import json
import math
import os
import random
import secrets
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs
from zoneinfo import ZoneInfo

from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from sandbox.serving import serve_forever, serve_in_background
from sandbox.world import Payment, World

STATIC = Path(__file__).parent / "static"
IST = ZoneInfo("Asia/Kolkata")
DEFAULT_EMAIL = "ops@payops.test"
DEFAULT_PASSWORD = "payshack-dev-password"
DEFAULT_DATA_KEY = "ps-portal-7f3c9a1e"
SESSION_COOKIE = "PSSESSID"
NAMES = ("Aarav Sharma", "Diya Patel", "Rahul Singh", "Priya Gupta", "Vikram Rao", "Ananya Iyer", "Kabir Khan")


@dataclass
class PayShackConfig:
    email: str = DEFAULT_EMAIL
    password: str = DEFAULT_PASSWORD
    data_key: str = DEFAULT_DATA_KEY
    seed: int = 11
    initial_rows: int = 0
    days: float = 1.0
    session_ttl: float = 1800.0
    max_page_size: int = 500
    trickle_interval: float = 0.0
    trickle_new: int = 3
    # the demo's shared payments (sandbox/world.py) from `world_since` on, instead of generated rows
    world_seed: int | None = None
    world_since: datetime | None = None  # default: the last `days` days
    world_interval_seconds: float | None = None  # default: the world's
    world_block: int | None = None  # default: the world's


# --- CryptoJS-compatible AES ("Salted__" + EVP_BytesToKey MD5) ---------------------------------


def _evp_bytes_to_key(passphrase: bytes, salt: bytes, size: int = 48) -> bytes:
    derived, block = b"", b""
    while len(derived) < size:
        block = hashlib.md5(block + passphrase + salt).digest()
        derived += block
    return derived[:size]


def cryptojs_encrypt(plaintext: bytes, passphrase: str) -> str:
    salt = os.urandom(8)
    key_iv = _evp_bytes_to_key(passphrase.encode(), salt)
    padder = padding.PKCS7(128).padder()
    padded = padder.update(plaintext) + padder.finalize()
    encryptor = Cipher(algorithms.AES(key_iv[:32]), modes.CBC(key_iv[32:])).encryptor()
    return base64.b64encode(b"Salted__" + salt + encryptor.update(padded) + encryptor.finalize()).decode()


# --- state -------------------------------------------------------------------------------------


# the latest a payment's row can be dated after the payment: the portal's delay plus a duplicate's minute
_LATEST_ROW = timedelta(seconds=120)


def _inr(minor: int) -> str:
    return f"{minor // 100:,}.{minor % 100:02d}"


class PortalState:
    def __init__(self, config: PayShackConfig) -> None:
        self.config = config
        self.rng = random.Random(config.seed)
        self.rows: list[dict[str, Any]] = []
        self.when: list[datetime] = []  # parallel: the row's time (aware)
        self.sessions: dict[str, float] = {}  # token -> expires at (monotonic)
        self.expire_after_calls: int | None = None
        self.stats = {"logins": 0, "failed_logins": 0, "api_calls": 0, "unauthorized": 0, "pages": 0}
        self.world: World | None = None
        self.world_until: datetime | None = None
        self.world_start: datetime | None = None
        self.unsettled: list[tuple[int, Payment]] = []  # (index into rows, payment) still pending
        if config.world_seed is not None:
            kwargs: dict[str, Any] = {}
            if config.world_interval_seconds:
                kwargs["interval_seconds"] = config.world_interval_seconds
            if config.world_block:
                kwargs["block"] = config.world_block
            self.world = World(config.world_seed, **kwargs)
            self.world_until = config.world_since or datetime.now(timezone.utc) - timedelta(days=config.days)
            self.world_start = self.world_until

    def _world_row(self, p: Payment, copy: int, when: datetime, status: str) -> dict[str, Any]:
        row = {
            "order_id": p.payshack_key,
            "transaction_id": f"PSK{p.index * 2 + copy:010d}",  # stable: the same after a restart
            "utr": "",
            "amount": _inr(p.amount_minor),
            "paid_amount": "0.00",
            "status": "PENDING",
            "date": when.astimezone(IST).strftime("%Y-%m-%d %H:%M:%S"),
            "customer_name": p.payer_name,
            "customer_vpa": p.payer_vpa,
        }
        self._settle(row, p, status)
        return row

    @staticmethod
    def _settle(row: dict[str, Any], p: Payment, status: str) -> None:
        if status == "success":
            row.update(status="SUCCESS", paid_amount=_inr(p.amount_minor - p.paid_short_minor), utr=p.utr)
        elif status == "fail":
            row.update(status="FAILED")

    def reveal(self, until: datetime | None = None) -> int:
        """The world's payments up to `until` (default now) become rows (newest last, as the
        portal's order expects), and the pending ones whose time has come settle."""
        assert self.world is not None and self.world_until is not None and self.world_start is not None, \
            "no world_seed configured"
        until = until or datetime.now(timezone.utc)
        fresh: list[tuple[datetime, int, int, Payment]] = []
        # A row is listed once its own time has come, never dated ahead of the portal's clock: the
        # portal stamps a payment up to a few seconds after it happened, and a duplicate a minute
        # later, so payments from just before the last reveal may still owe rows.
        for p in self.world.between(max(self.world_start, self.world_until - _LATEST_ROW), until):
            for copy in range(p.payshack_rows()):
                # a duplicate: the payer's retry, listed again a minute later under a new transaction id
                when = p.payshack_at + timedelta(seconds=60 * copy)
                if self.world_until <= when < until:
                    fresh.append((when, p.index, copy, p))
        fresh.sort(key=lambda item: (item[0], item[1], item[2]))
        for when, _, copy, p in fresh:
            status = p.status_at("payshack", until)
            self.rows.append(self._world_row(p, copy, when, status))
            self.when.append(when.astimezone(IST))
            if status == "pending" and p.settles_at is not None:
                self.unsettled.append((len(self.rows) - 1, p))
        self.world_until = max(self.world_until, until)
        still: list[tuple[int, Payment]] = []
        for index, p in self.unsettled:
            if p.settles_at is not None and p.settles_at <= until:
                self._settle(self.rows[index], p, p.payshack_status)
            else:
                still.append((index, p))
        self.unsettled = still
        return len(fresh)

    def generate(self, count: int, *, days: float | None = None) -> int:
        rng = self.rng
        now = datetime.now(IST).replace(microsecond=0)
        span = (days if days is not None else self.config.days) * 86400
        for off in sorted((rng.random() * span for _ in range(count)), reverse=True):
            n = len(self.rows) + 1
            when = now - timedelta(seconds=int(off))
            minor = rng.randint(100, 50_000) * 100
            status = rng.choices(("SUCCESS", "FAILED", "PENDING"), (75, 15, 10))[0]
            name = rng.choice(NAMES)
            self.rows.append({
                "order_id": f"91g-{n:08d}-{rng.getrandbits(24):06x}",
                "transaction_id": f"PSK{n:010d}",
                "utr": f"{rng.randint(100000000000, 999999999999)}" if status == "SUCCESS" else "",
                "amount": _inr(minor),
                "paid_amount": _inr(minor) if status == "SUCCESS" else "0.00",
                "status": status,
                "date": when.strftime("%Y-%m-%d %H:%M:%S"),
                "customer_name": name,
                "customer_vpa": f"{name.split()[0].lower()}{rng.randint(1, 99)}@upi",
            })
            self.when.append(when)
        return count

    def update(self, count: int) -> list[str]:
        changed = []
        for row in self.rows:
            if len(changed) >= count:
                break
            if row["status"] == "PENDING":
                row["status"] = "SUCCESS"
                row["paid_amount"] = row["amount"]
                row["utr"] = f"{self.rng.randint(100000000000, 999999999999)}"
                changed.append(row["transaction_id"])
        return changed

    # sessions

    def login(self) -> str:
        token = secrets.token_urlsafe(24)
        self.sessions[token] = time.monotonic() + self.config.session_ttl
        self.stats["logins"] += 1
        return token

    def valid(self, token: str | None) -> bool:
        expires = self.sessions.get(token or "")
        if expires is None or expires < time.monotonic():
            self.sessions.pop(token or "", None)
            return False
        return True

    def expire_all(self) -> int:
        n = len(self.sessions)
        self.sessions.clear()
        return n

    def page(self, page: int, page_size: int, date_from: datetime | None, date_to: datetime | None) -> dict[str, Any]:
        # newest first: new rows push older ones down, so a reader paging forward sees a row twice
        # rather than never
        idx = [i for i in range(len(self.rows) - 1, -1, -1)
               if (date_from is None or self.when[i] >= date_from) and (date_to is None or self.when[i] < date_to)]
        total = len(idx)
        last_page = max(1, math.ceil(total / page_size))
        chosen = idx[(page - 1) * page_size: page * page_size]
        self.stats["pages"] += 1
        return {"rows": [self.rows[i] for i in chosen], "page": page, "page_size": page_size, "total": total,
                "last_page": last_page}


def _bound(value: str | None, *, end: bool) -> datetime | None:
    if not value:
        return None
    if len(value) == 10:
        d = date.fromisoformat(value)
        ts = datetime(d.year, d.month, d.day, tzinfo=IST)
        return ts + timedelta(days=1) if end else ts
    ts = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return ts if ts.tzinfo else ts.replace(tzinfo=IST)


# --- pages -------------------------------------------------------------------------------------

_LAYOUT = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title} · PayShack</title>
<style>body{{font-family:sans-serif;margin:2rem}}table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:4px 8px}}
.alert{{color:#b00;margin:1rem 0}}</style></head>
<body><header><b>PayShack</b> merchant dashboard</header>{body}</body></html>"""


def _login_page(error: str | None = None, notice: str | None = None, status: int = 200) -> HTMLResponse:
    parts = ["<h1>Sign in</h1>"]
    if notice:
        parts.append(f'<div class="notice" id="login-notice">{html.escape(notice)}</div>')
    if error:
        parts.append(f'<div class="alert" id="login-error">{html.escape(error)}</div>')
    parts.append(
        '<form method="post" action="/login" id="login-form">'
        '<label>Email <input type="email" name="email" autocomplete="username" required></label><br>'
        '<label>Password <input type="password" name="password" autocomplete="current-password" required></label><br>'
        '<button type="submit" id="login-button">Sign in</button></form>'
    )
    return HTMLResponse(_LAYOUT.format(title="Sign in", body="".join(parts)), status)


def _state(request: Request) -> PortalState:
    return request.app.state.portal


async def login_form(request: Request) -> Response:
    expired = request.query_params.get("expired")
    return _login_page(notice="Your session has expired. Please sign in again." if expired else None)


async def login_submit(request: Request) -> Response:
    state = _state(request)
    form = parse_qs((await request.body()).decode())
    email, password = form.get("email", [""])[0], form.get("password", [""])[0]
    if email != state.config.email or password != state.config.password:
        state.stats["failed_logins"] += 1
        return _login_page(error="Invalid email or password", status=401)
    response = RedirectResponse("/transactions", 303)
    response.set_cookie(SESSION_COOKIE, state.login(), httponly=True, samesite="lax", path="/")
    return response


async def logout(request: Request) -> Response:
    _state(request).sessions.pop(request.cookies.get(SESSION_COOKIE, ""), None)
    response = RedirectResponse("/login", 303)
    response.delete_cookie(SESSION_COOKIE)
    return response


async def transactions_page(request: Request) -> Response:
    state = _state(request)
    if not state.valid(request.cookies.get(SESSION_COOKIE)):
        return RedirectResponse("/login?expired=1", 303)
    cfg = json.dumps({"api": "/api/v2/transactions", "dataKey": state.config.data_key})
    body = (
        "<h1>Transactions</h1>"
        f"<script>window.__PS_CFG = {cfg};</script>"
        '<p id="load-status">loading…</p>'
        '<table id="txn-table"><thead><tr><th>Order ID</th><th>Transaction ID</th><th>UTR</th><th>Amount</th>'
        "<th>Paid Amount</th><th>Status</th><th>Date</th></tr></thead><tbody></tbody></table>"
        '<nav><a id="prev-page" hidden>Previous</a> <span id="page-info"></span> <a id="next-page" hidden>Next</a></nav>'
        '<script src="/static/payshack-portal.js"></script>'
    )
    return HTMLResponse(_LAYOUT.format(title="Transactions", body=body))


async def transactions_api(request: Request) -> Response:
    state = _state(request)
    state.stats["api_calls"] += 1
    if state.expire_after_calls is not None:
        state.expire_after_calls -= 1
        if state.expire_after_calls < 0:
            state.expire_after_calls = None
            state.expire_all()
    if not state.valid(request.cookies.get(SESSION_COOKIE)):
        state.stats["unauthorized"] += 1
        return JSONResponse({"status": False, "error": "session_expired"}, 401)
    q = request.query_params
    try:
        page = max(1, int(q.get("page", "1")))
        page_size = min(state.config.max_page_size, max(1, int(q.get("page_size", "50"))))
        date_from, date_to = _bound(q.get("from"), end=False), _bound(q.get("to"), end=True)
    except ValueError as exc:
        return JSONResponse({"status": False, "error": f"bad parameter: {exc}"}, 400)
    payload = state.page(page, page_size, date_from, date_to)
    return JSONResponse({"status": True, "data": cryptojs_encrypt(json.dumps(payload).encode(), state.config.data_key)})


async def static_js(request: Request) -> Response:
    return FileResponse(STATIC / "payshack-portal.js", media_type="application/javascript")


async def _json(request: Request) -> dict[str, Any]:
    raw = await request.body()
    return json.loads(raw) if raw else {}


async def ctl_generate(request: Request) -> Response:
    body = await _json(request)
    return JSONResponse({"created": _state(request).generate(int(body.get("count", 1)), days=body.get("days"))})


async def ctl_update(request: Request) -> Response:
    body = await _json(request)
    return JSONResponse({"updated": _state(request).update(int(body.get("count", 1)))})


async def ctl_expire(request: Request) -> Response:
    return JSONResponse({"expired": _state(request).expire_all()})


async def ctl_expire_after(request: Request) -> Response:
    body = await _json(request)
    _state(request).expire_after_calls = int(body.get("api_calls", 0))
    return JSONResponse({"expire_after_calls": _state(request).expire_after_calls})


async def ctl_stats(request: Request) -> Response:
    state = _state(request)
    return JSONResponse({**state.stats, "rows": len(state.rows), "sessions": len(state.sessions)})


async def root(request: Request) -> Response:
    return RedirectResponse("/transactions", 303)


def create_payshack_app(config: PayShackConfig | None = None) -> Starlette:
    state = PortalState(config or PayShackConfig())
    if state.world is not None:
        state.reveal()
    elif state.config.initial_rows:
        state.generate(state.config.initial_rows)

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
                    state.update(1)

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
            Route("/", root, methods=["GET"]),
            Route("/login", login_form, methods=["GET"]),
            Route("/login", login_submit, methods=["POST"]),
            Route("/logout", logout, methods=["GET", "POST"]),
            Route("/transactions", transactions_page, methods=["GET"]),
            Route("/api/v2/transactions", transactions_api, methods=["GET"]),
            Route("/static/payshack-portal.js", static_js, methods=["GET"]),
            Route("/_sandbox/generate", ctl_generate, methods=["POST"]),
            Route("/_sandbox/update", ctl_update, methods=["POST"]),
            Route("/_sandbox/expire_sessions", ctl_expire, methods=["POST"]),
            Route("/_sandbox/expire_after", ctl_expire_after, methods=["POST"]),
            Route("/_sandbox/stats", ctl_stats, methods=["GET"]),
        ],
        lifespan=lifespan,
    )
    app.state.portal = state
    return app


@dataclass
class RunningPayShack:
    url: str
    app: Starlette
    state: PortalState = field(repr=False)


@contextlib.asynccontextmanager
async def running_payshack(config: PayShackConfig | None = None, *, host: str = "127.0.0.1",
                           port: int = 0) -> AsyncIterator[RunningPayShack]:
    """Serve a sandbox PayShack portal in this event loop on a free loopback port."""
    app = create_payshack_app(config)
    async with serve_in_background(app, host=host, port=port) as served:
        yield RunningPayShack(url=served.url, app=app, state=app.state.portal)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m sandbox.payshack", description="Run the sandbox PayShack portal.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port (printed on start)")
    parser.add_argument("--email", default=DEFAULT_EMAIL)
    parser.add_argument("--password", default=DEFAULT_PASSWORD)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--rows", type=int, default=500, help="transactions generated at start")
    parser.add_argument("--session-ttl", type=float, default=1800.0)
    parser.add_argument("--trickle", type=float, default=10.0, help="seconds between new transactions; 0 = off")
    parser.add_argument("--world-seed", type=int, default=None,
                        help="list the demo's shared payments (sandbox/world.py) of this seed instead of generated rows")
    parser.add_argument("--world-since", default=None,
                        help="ISO time the shared payments start at (default: a day ago)")
    parser.add_argument("--log-level", default="info")
    args = parser.parse_args(argv)
    config = PayShackConfig(email=args.email, password=args.password, seed=args.seed, initial_rows=args.rows,
                            session_ttl=args.session_ttl, trickle_interval=args.trickle, world_seed=args.world_seed,
                            world_since=_bound(args.world_since, end=False) if args.world_since else None)
    serve_forever(create_payshack_app(config), host=args.host, port=args.port, log_level=args.log_level,
                  announce=lambda url: print(f"sandbox payshack listening on {url} (login {args.email})", flush=True))


if __name__ == "__main__":
    main()
