"""PayShack portal fetcher: Playwright drives Chromium through the portal like a person would.

The portal has no API for us: it serves an HTML page whose table is filled by an XHR returning
AES-encrypted JSON (CryptoJS passphrase format), decrypted by the page's own script. We load the
page in a real browser (so the portal sees a normal session), intercept that XHR's response and
decrypt it here with `cryptography`, using the key the page itself carries. The session cookie
is kept in Redis with a TTL and reused by the next run; an expired session means one re-login.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit

from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from redis.asyncio import Redis

log = logging.getLogger("payops.connectors.payshack")

API_PATH = "/api/v2/transactions"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
MAX_RELOGINS_PER_RUN = 5


class PayShackError(Exception):
    """The portal could not be read right now (retryable)."""


class PayShackAuthError(PayShackError):
    """The portal refused our credentials: retrying will not help."""


def _evp_bytes_to_key(passphrase: bytes, salt: bytes, size: int = 48) -> bytes:
    """OpenSSL's EVP_BytesToKey with MD5, one iteration: what CryptoJS does with a passphrase."""
    derived, block = b"", b""
    while len(derived) < size:
        block = hashlib.md5(block + passphrase + salt).digest()
        derived += block
    return derived[:size]


def decrypt_cryptojs(ciphertext_b64: str, passphrase: str) -> Any:
    raw = base64.b64decode(ciphertext_b64)
    if raw[:8] != b"Salted__":
        raise PayShackError("portal data is not in CryptoJS salted format")
    key_iv = _evp_bytes_to_key(passphrase.encode(), raw[8:16])
    decryptor = Cipher(algorithms.AES(key_iv[:32]), modes.CBC(key_iv[32:])).decryptor()
    padded = decryptor.update(raw[16:]) + decryptor.finalize()
    unpadder = padding.PKCS7(128).unpadder()
    try:
        plain = unpadder.update(padded) + unpadder.finalize()
    except ValueError:
        raise PayShackError("portal data did not decrypt (has the page's key changed?)") from None
    return json.loads(plain)


@dataclass(frozen=True, slots=True)
class PortalPage:
    rows: list[dict[str, Any]]
    page: int
    last_page: int
    total: int


class PayShackPortal:
    def __init__(
        self,
        *,
        base_url: str,
        email: str,
        password: str,
        redis: Redis | None,
        session_ttl_seconds: int = 1500,
        chromium_path: str = "/usr/bin/chromium",
        page_size: int = 200,
        timeout_seconds: float = 20.0,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.email = email
        self._password = password
        self._redis = redis
        self._ttl = session_ttl_seconds
        self._chromium = chromium_path
        self.page_size = page_size
        self._timeout_ms = int(timeout_seconds * 1000)
        self.logins = 0
        self.relogins = 0
        self._pw = self._browser = self._context = self._page = None

    @property
    def session_key(self) -> str:
        who = hashlib.sha256(f"{self.base_url}|{self.email}".encode()).hexdigest()[:24]
        return f"payops:payshack:session:{who}"

    async def __aenter__(self) -> "PayShackPortal":
        from playwright.async_api import async_playwright

        self._pw = await async_playwright().start()
        try:
            self._browser = await self._pw.chromium.launch(
                executable_path=self._chromium, headless=True, args=CHROMIUM_ARGS
            )
        except Exception as exc:
            await self._pw.stop()
            raise PayShackError(f"could not start Chromium at {self._chromium}: {exc}") from exc
        self._context = await self._browser.new_context()
        self._context.set_default_timeout(self._timeout_ms)
        cookies = await self._stored_session()
        if cookies:
            await self._context.add_cookies(cookies)
        self._page = await self._context.new_page()
        return self

    async def __aexit__(self, *exc: object) -> None:
        for closer in (self._context, self._browser):
            if closer is not None:
                try:
                    await closer.close()
                except Exception:  # noqa: BLE001 - closing a dead browser must not mask the real error
                    pass
        if self._pw is not None:
            await self._pw.stop()

    # --- session ---------------------------------------------------------------------------------

    async def _stored_session(self) -> list[dict[str, Any]] | None:
        if self._redis is None:
            return None
        try:
            raw = await self._redis.get(self.session_key)
        except Exception as exc:  # noqa: BLE001 - no stored session just means a login
            log.warning("could not read the stored PayShack session: %s", exc)
            return None
        return json.loads(raw) if raw else None

    async def _store_session(self) -> None:
        if self._redis is None:
            return
        cookies = await self._context.cookies(self.base_url)
        try:
            await self._redis.set(self.session_key, json.dumps(cookies), ex=self._ttl)
        except Exception as exc:  # noqa: BLE001
            log.warning("could not store the PayShack session: %s", exc)

    async def _forget_session(self) -> None:
        await self._context.clear_cookies()
        if self._redis is not None:
            try:
                await self._redis.delete(self.session_key)
            except Exception:  # noqa: BLE001
                pass

    async def login(self) -> None:
        from playwright.async_api import Error as PlaywrightError

        page = self._page
        for attempt in range(3):
            try:
                await page.goto(f"{self.base_url}/login", wait_until="domcontentloaded")
                break
            except PlaywrightError as exc:
                # the portal's own script may be redirecting to its login page at this moment
                if "interrupted by another navigation" not in str(exc) or attempt == 2:
                    raise
                await page.wait_for_load_state("domcontentloaded")
        await page.fill("input[name=email]", self.email)
        await page.fill("input[name=password]", self._password)
        async with page.expect_navigation(wait_until="domcontentloaded"):
            await page.click("button[type=submit]")
        self.logins += 1
        if urlsplit(page.url).path.rstrip("/") == "/login":
            error = page.locator("#login-error")
            message = (await error.inner_text()).strip() if await error.count() else "login refused"
            raise PayShackAuthError(f"PayShack login failed for {self.email}: {message}")
        await self._store_session()

    # --- reading ----------------------------------------------------------------------------------

    async def fetch_page(self, number: int, date_from: str | None, date_to: str | None) -> PortalPage:
        """Open the transactions page `number` and read the data its XHR brought, logging in
        (again) when the portal says the session is gone."""
        query = {"page": number, "page_size": self.page_size}
        if date_from:
            query["from"] = date_from
        if date_to:
            query["to"] = date_to
        url = f"{self.base_url}/transactions?{urlencode(query)}"
        page = self._page
        for _ in range(MAX_RELOGINS_PER_RUN + 1):
            loop = asyncio.get_running_loop()
            seen: asyncio.Future = loop.create_future()

            def on_response(response) -> None:
                if urlsplit(response.url).path == API_PATH and not seen.done():
                    seen.set_result(response)

            page.on("response", on_response)
            try:
                await page.goto(url, wait_until="domcontentloaded")
                if urlsplit(page.url).path.rstrip("/") == "/login":
                    await self._relogin()
                    continue
                response = await asyncio.wait_for(seen, self._timeout_ms / 1000)
            finally:
                page.remove_listener("response", on_response)
            if response.status == 401:
                await self._relogin()
                continue
            if response.status != 200:
                raise PayShackError(f"portal API answered {response.status}")
            body = await response.json()
            key = await page.evaluate("window.__PS_CFG && window.__PS_CFG.dataKey")
            if not key:
                raise PayShackError("the portal page carries no data key")
            data = decrypt_cryptojs(body["data"], key)
            return PortalPage(rows=list(data["rows"]), page=int(data["page"]), last_page=int(data["last_page"]),
                              total=int(data["total"]))
        raise PayShackError(f"the portal kept ending the session ({MAX_RELOGINS_PER_RUN} logins in one run)")

    async def _relogin(self) -> None:
        if self.logins:  # the first login of a run without a stored session is not a re-login
            self.relogins += 1
        await self._forget_session()
        await self.login()

    async def pages(
        self, date_from: str | None, date_to: str | None, *, start_page: int = 1,
        on_progress: Callable[[], None] | None = None,
    ) -> AsyncIterator[PortalPage]:
        number = start_page
        while True:
            if on_progress is not None:
                on_progress()
            result = await self.fetch_page(number, date_from, date_to)
            yield result
            if result.page >= result.last_page:
                return
            number += 1
