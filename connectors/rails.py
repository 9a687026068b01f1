"""One connector per rail at the sandbox bank: ACH and SEPA (single payments and batch files),
SEPA Instant, Wire, Faster Payments, and Mobile Money (XOF) over an operator-shaped API.

Each reports its own health from the bank's per-rail endpoint, so a rail's outage opens only
that connector's circuit breaker and routing moves payouts to the next candidate.
"""

from __future__ import annotations

import uuid
from urllib.parse import quote

from pydantic import BaseModel, ValidationError

from connectors.base import (
    ConnectorError,
    ConnectorHealth,
    PaymentStatus,
    PermanentConnectorError,
    SubmitRequest,
    SubmitResult,
    TransientConnectorError,
)
from connectors.sandbox_bank import SandboxBankConnector, error_from_response
from core.platform.money import MoneyError, format_amount


class FileEntryResult(BaseModel):
    reference: str
    status: str  # accepted | rejected
    payment_id: str | None = None
    error: str | None = None


class FileReport(BaseModel):
    file_id: str
    status: str
    entry_count: int
    total_minor: int
    accepted_count: int
    rejected_count: int
    entries: list[FileEntryResult]


# A file POST answered like this may have been taken by the bank: the file id is known there
# ("file_id_conflict": a bank that refuses a resubmission instead of replaying its report).
FILE_UNKNOWN_OUTCOME_CODES = frozenset({"file_id_conflict"})


class FileRejected(PermanentConnectorError):
    """The bank refused the whole file (malformed, control totals wrong)."""

    def __init__(self, message: str, errors: list[str]) -> None:
        super().__init__("file_rejected", message, status_code=422)
        self.errors = errors


class RailConnector(SandboxBankConnector):
    """A single rail at the sandbox bank's payments API."""

    routable = True
    rail: str = ""

    def __init__(self, name: str, rail: str, *, preference: int = 10, **kwargs) -> None:
        super().__init__(name=name, **kwargs)
        self.rail = rail
        self.rails = frozenset({rail})
        self.preference = preference

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, rail={self.rail!r})"

    async def health(self) -> ConnectorHealth:
        import time

        started = time.perf_counter()
        try:
            resp = await self._request("GET", f"/v1/rails/{self.rail}/health")
        except ConnectorError as exc:
            return ConnectorHealth(connector=self.name, healthy=False, detail=str(exc))
        latency_ms = round((time.perf_counter() - started) * 1000, 2)
        healthy = resp.status_code == 200
        return ConnectorHealth(connector=self.name, healthy=healthy, latency_ms=latency_ms,
                               detail=None if healthy else f"HTTP {resp.status_code}")


class BatchRailConnector(RailConnector):
    """A rail that also takes payment files at its cutoff."""

    file_format: str = ""
    file_path: str = ""
    file_extension: str = ""

    async def submit_file(self, file_id: str, content: bytes) -> FileReport:
        """Idempotent on `file_id`: a replay returns the bank's first acceptance report."""
        resp = await self._request(
            "POST", self.file_path, content=content,
            headers={"Idempotency-Key": file_id, "Content-Type": "application/octet-stream"},
        )
        if resp.status_code == 422:
            try:
                data = resp.json()
            except ValueError:
                data = {}
            raise FileRejected(str(data.get("message") or "file rejected"), list(data.get("errors") or []))
        if resp.status_code not in (200, 201):
            raise error_from_response(resp)
        try:
            return FileReport.model_validate(resp.json())
        except (ValueError, ValidationError) as exc:
            raise TransientConnectorError("bad_response", "unreadable file acceptance from the bank") from exc


    async def file_status(self, file_id: str) -> FileReport | None:
        """Ask the bank about a file it may have received (after an answer that got lost): its
        acceptance report, or None when the bank confirms it has no file with this id. Raises a
        ConnectorError when the bank does not answer (the outcome stays unknown)."""
        resp = await self._request("GET", f"/v1/files/{quote(file_id, safe='')}")
        if resp.status_code == 404:
            return None
        if resp.status_code != 200:
            raise error_from_response(resp)
        try:
            return FileReport.model_validate(resp.json())
        except (ValueError, ValidationError) as exc:
            raise TransientConnectorError("bad_response", "unreadable file report from the bank") from exc


class AchConnector(BatchRailConnector):
    file_format, file_path, file_extension = "nacha", "/v1/files/nacha", "ach"


class SepaConnector(BatchRailConnector):
    file_format, file_path, file_extension = "pain.001.001.09", "/v1/files/pain001", "xml"


MOMO_NAMESPACE = uuid.UUID("6f1c6a1e-4a53-4c1b-9d7e-0f3b7a0c2d11")


def momo_reference_id(reference: str) -> str:
    """The operator wants a UUID per transfer; derive it from the payout id so a retry reuses it."""
    return str(uuid.uuid5(MOMO_NAMESPACE, reference))


class MobileMoneyConnector(RailConnector):
    """Mobile-money disbursements (West Africa, XOF) through an operator-shaped API, which takes
    amounts as decimal strings in major units: the currency's exponent converts (XOF 0, GHS 2)."""

    async def submit(self, req: SubmitRequest) -> SubmitResult:
        if not self.serves(req.rail):
            raise PermanentConnectorError("unsupported_rail", f"{self.name} does not serve rail {req.rail!r}")
        try:
            format_amount(req.amount_minor, req.currency)
        except MoneyError as exc:
            raise PermanentConnectorError("unsupported_currency", str(exc)) from None
        phone = str(req.beneficiary.get("phone") or "")
        ref_id = momo_reference_id(req.reference)
        resp = await self._request(
            "POST", "/mobile-money/v1_0/transfer",
            # the operator takes a decimal string in major units: "1500" XOF, "12.50" GHS
            json={"amount": format_amount(req.amount_minor, req.currency), "currency": req.currency,
                  "externalId": req.reference,
                  "payee": {"partyIdType": "MSISDN", "partyId": phone.lstrip("+")},
                  "payerMessage": (req.description or "payout")[:160], "payeeNote": req.reference},
            headers={"X-Reference-Id": ref_id},
        )
        if resp.status_code == 400 or resp.status_code == 409:
            code = (resp.json() or {}).get("error", "invalid_request") if resp.content else "invalid_request"
            if resp.status_code == 409:  # a transfer with this reference exists: not a refusal
                raise PermanentConnectorError("reference_conflict", str(code).lower(), status_code=409)
            raise PermanentConnectorError("invalid_account" if code == "PAYEE_NOT_FOUND" else str(code).lower(),
                                          status_code=resp.status_code)
        if resp.status_code != 202:
            raise error_from_response(resp)
        status = await self.poll_status(req.reference)
        from datetime import datetime, timezone

        return SubmitResult(payment_id=status.payment_id, status="accepted", accepted_at=datetime.now(timezone.utc))

    async def poll_status(self, reference: str) -> PaymentStatus:
        ref_id = momo_reference_id(reference)
        resp = await self._request("GET", f"/mobile-money/v1_0/transfer/{quote(ref_id)}")
        if resp.status_code == 404:
            raise PermanentConnectorError("payment_not_found", f"the operator has no transfer {reference!r}",
                                          status_code=404)
        if resp.status_code != 200:
            raise error_from_response(resp)
        data = resp.json()
        status = {"PENDING": "accepted", "SUCCESSFUL": "settled", "FAILED": "failed"}.get(data.get("status"), "accepted")
        return PaymentStatus(reference=reference, payment_id=data.get("financialTransactionId") or ref_id,
                             status=status, failure_code=data.get("reason"))


# name, class, rail: the connectors a deployment with a sandbox bank has
RAIL_CONNECTORS: list[tuple[str, type[RailConnector], str]] = [
    ("bank_ach", AchConnector, "ach"),
    ("bank_sepa", SepaConnector, "sepa"),
    ("bank_sepa_instant", RailConnector, "sepa_instant"),
    ("bank_wire", RailConnector, "wire"),
    ("bank_fps", RailConnector, "faster_payments"),
    ("momo_xof", MobileMoneyConnector, "mobile_money"),
]
