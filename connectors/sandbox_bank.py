"""The connector for the sandbox bank's HTTP API (see sandbox/bank.py for the bank's side).

Submissions are idempotent on the payout reference (sent both in the body and as
`Idempotency-Key`), so any transient failure, including a timeout after the bank accepted, is
retried safely: the bank answers a replay with the original acceptance.
"""

from __future__ import annotations

import email.utils
import json
import time
from collections.abc import Mapping
from datetime import datetime, timezone
from urllib.parse import quote

import httpx
from pydantic import ValidationError

from connectors import signing
from connectors.base import (
    BankConnector,
    BankNotification,
    BankPaymentRecord,
    ConnectorError,
    ConnectorHealth,
    PaymentStatus,
    PermanentConnectorError,
    RecallResult,
    SubmitRequest,
    SubmitResult,
    TransientConnectorError,
    WebhookPayloadError,
    WebhookSignatureError,
)

SANDBOX_RAILS = frozenset({"ach", "sepa", "sepa_instant", "wire", "faster_payments", "mobile_money"})


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Retry-After as seconds: either delta-seconds or an HTTP date."""
    if value is None or not value.strip():
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    current = time.time() if now is None else now
    return max(0.0, when.timestamp() - current)


def _error_code(resp: httpx.Response) -> tuple[str | None, str | None]:
    try:
        data = resp.json()
    except (ValueError, UnicodeDecodeError):
        return None, None
    if not isinstance(data, dict):
        return None, None
    code, message = data.get("error"), data.get("message")
    return (str(code) if code else None), (str(message) if message else None)


def error_from_response(resp: httpx.Response) -> ConnectorError:
    """Classify a non-2xx answer from the bank."""
    status = resp.status_code
    code, message = _error_code(resp)
    retry_after = parse_retry_after(resp.headers.get("Retry-After"))
    if status == 429:
        return TransientConnectorError(
            code or "rate_limited", message, retry_after=retry_after, status_code=status
        )
    if status >= 500 or status == 408:
        return TransientConnectorError(
            code or "bank_unavailable", message or f"bank answered HTTP {status}",
            retry_after=retry_after, status_code=status,
        )
    return PermanentConnectorError(code or f"http_{status}", message, status_code=status)


class SandboxBankConnector(BankConnector):
    rails = SANDBOX_RAILS
    # The all-rails connector of the first payout issue: kept for payouts already routed to it and
    # for route overrides; the per-rail connectors (connectors/rails.py) are what routing picks.
    routable = False

    def __init__(
        self,
        name: str = "sandbox",
        base_url: str = "http://127.0.0.1:8081",
        webhook_secret: str | list[str] = "",
        timeout_seconds: float = 10.0,
        http_client: httpx.AsyncClient | None = None,
        webhook_tolerance_seconds: float = signing.DEFAULT_TOLERANCE_SECONDS,
    ) -> None:
        self.name = name
        self.base_url = base_url.rstrip("/")
        self.webhook_secret = webhook_secret
        self.timeout_seconds = timeout_seconds
        self.webhook_tolerance_seconds = webhook_tolerance_seconds
        self._owns_client = http_client is None
        self._http = http_client or httpx.AsyncClient(timeout=timeout_seconds)

    def __repr__(self) -> str:
        return f"SandboxBankConnector(name={self.name!r}, base_url={self.base_url!r})"

    async def _request(self, method: str, path: str, **kwargs) -> httpx.Response:
        try:
            return await self._http.request(
                method, self.base_url + path, timeout=self.timeout_seconds, **kwargs
            )
        except httpx.TimeoutException as exc:
            raise TransientConnectorError("timeout", f"bank did not answer in {self.timeout_seconds}s") from exc
        except httpx.ConnectError as exc:
            raise TransientConnectorError("connection_error", f"cannot reach the bank: {exc}") from exc
        except httpx.TransportError as exc:
            raise TransientConnectorError("transport_error", f"{type(exc).__name__}: {exc}") from exc

    async def submit(self, req: SubmitRequest) -> SubmitResult:
        if not self.serves(req.rail):
            raise PermanentConnectorError("unsupported_rail", f"{self.name} does not serve rail {req.rail!r}")
        resp = await self._request(
            "POST",
            "/v1/payments",
            json=req.model_dump(mode="json"),
            headers={"Idempotency-Key": req.reference},
        )
        if resp.status_code not in (200, 201):
            raise error_from_response(resp)
        try:
            data = resp.json()
            return SubmitResult(
                payment_id=data["payment_id"],
                status=data.get("status", "accepted"),
                accepted_at=data["accepted_at"],
                replayed=resp.status_code == 200,
            )
        except (ValueError, KeyError, TypeError, ValidationError) as exc:
            # The bank may well have accepted; a retry of the same reference finds out safely.
            raise TransientConnectorError("bad_response", "unreadable acceptance from the bank") from exc

    async def poll_status(self, reference: str) -> PaymentStatus:
        resp = await self._request("GET", f"/v1/payments/{quote(reference, safe='')}")
        if resp.status_code == 404:
            raise PermanentConnectorError(
                "payment_not_found", f"the bank has no payment {reference!r}", status_code=404
            )
        if resp.status_code != 200:
            raise error_from_response(resp)
        try:
            data = resp.json()
            return PaymentStatus(
                reference=data["reference"],
                payment_id=data["payment_id"],
                status=data["status"],
                failure_code=data.get("failure_code"),
                return_code=data.get("return_code"),
            )
        except (ValueError, KeyError, TypeError, ValidationError) as exc:
            raise TransientConnectorError("bad_response", "unreadable payment status from the bank") from exc

    async def recall(self, reference: str) -> RecallResult:
        """`POST /v1/payments/{reference}/recall`: the bank stops an accepted payment (it fails with
        `recalled`); one that settled or failed already is not recallable (409)."""
        resp = await self._request("POST", f"/v1/payments/{quote(reference, safe='')}/recall")
        if resp.status_code == 200:
            return RecallResult(recalled=True, detail="recalled by the bank")
        if resp.status_code in (404, 409):
            code, message = _error_code(resp)
            return RecallResult(recalled=False, detail=f"{code or resp.status_code}: {message or 'refused'}")
        raise error_from_response(resp)

    async def list_payments(self, since: datetime) -> list[BankPaymentRecord]:
        """The bank's payment report (`GET /v1/payments?since=`) for the rails this connector
        serves, every page."""
        records: list[BankPaymentRecord] = []
        params = {"since": since.astimezone(timezone.utc).isoformat(), "rail": ",".join(sorted(self.rails)),
                  "limit": "1000"}
        while True:
            resp = await self._request("GET", "/v1/payments", params=params)
            if resp.status_code != 200:
                raise error_from_response(resp)
            try:
                data = resp.json()
                records += [BankPaymentRecord.model_validate(row) for row in data["payments"]]
                cursor = data.get("next_cursor")
            except (ValueError, KeyError, TypeError, ValidationError) as exc:
                raise TransientConnectorError("bad_response", "unreadable payment report from the bank") from exc
            if not cursor:
                return records
            params = {**params, "cursor": cursor}

    def parse_webhook(
        self, headers: Mapping[str, str], body: bytes, *, now: float | None = None
    ) -> BankNotification:
        wanted = signing.SIGNATURE_HEADER.lower()
        header = next((v for k, v in headers.items() if k.lower() == wanted), None)
        # several secrets are accepted while one is rotated out (a str is the one secret)
        secrets = [self.webhook_secret] if isinstance(self.webhook_secret, str) else list(self.webhook_secret)
        for i, secret in enumerate(secrets):
            try:
                signing.verify(secret, header, body, now=now, tolerance_seconds=self.webhook_tolerance_seconds)
                break
            except WebhookSignatureError as exc:
                if exc.code != "signature_mismatch" or i == len(secrets) - 1:
                    raise
        try:
            return BankNotification.model_validate(json.loads(body))
        except (ValueError, UnicodeDecodeError, ValidationError) as exc:
            raise WebhookPayloadError("invalid_payload", "webhook body is not a bank notification") from exc

    async def health(self) -> ConnectorHealth:
        started = time.perf_counter()
        try:
            resp = await self._request("GET", "/health")
        except ConnectorError as exc:
            return ConnectorHealth(connector=self.name, healthy=False, detail=str(exc))
        latency_ms = round((time.perf_counter() - started) * 1000, 2)
        healthy = resp.status_code == 200
        detail = None if healthy else f"HTTP {resp.status_code}"
        return ConnectorHealth(connector=self.name, healthy=healthy, latency_ms=latency_ms, detail=detail)

    async def aclose(self) -> None:
        if self._owns_client:
            await self._http.aclose()
