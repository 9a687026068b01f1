"""Bulk payouts: up to 10,000 payouts in one request, as JSON or as a CSV upload.

(`/payouts/batches` are the bank batch FILES of batch rails, a different thing.)"""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Query, Request, Response

from api.deps import PayoutRead, PayoutWrite, RedisDep, Session, SettingsDep, merchant_scope
from api.routers.payouts import IdempotencyKey, OptionalTemporal, _creating_merchant
from api.schemas.bulk_payouts import BulkPayoutCreate, BulkPayoutOut, BulkPayoutPage, BulkPayoutReport, ItemPage
from api.schemas.common import problems
from core.platform.errors import Unprocessable
from core.payouts import bulk

router = APIRouter(prefix="/bulk-payouts", tags=["bulk payouts"])

_CREATE_DOC = """

Requires `Idempotency-Key`: a retried upload returns the same batch and report (200). Each item's
`reference` is the payout's idempotency key, unique per merchant across batches and single
payouts (POST /payouts' Idempotency-Key): an item whose reference was used before is rejected
(`duplicate_reference`), never paid twice. Every item is validated before anything is held; the
answer is a per-item report. `all_or_nothing`: one invalid item -> 422 with the report, nothing
created. Above PAYOPS_BULK_PAYOUT_APPROVAL_THRESHOLD_MINOR (any currency's total) the batch is
`awaiting_approval` until an APPROVE_BULK_PAYOUT ops action is approved; no payout exists before.
Payouts are ordinary payouts (GET /payouts lists them); funds are held by each payout's workflow,
so when the balance runs out the remaining ones end `rejected` / `insufficient_funds`."""


@router.post(
    "", response_model=BulkPayoutReport, status_code=201,
    responses={200: {"model": BulkPayoutReport, "description": "a replay: the original batch"},
               **problems(400, 401, 403, 404, 409, 413, 422)},
)
async def create_bulk_payout(
    body: BulkPayoutCreate, principal: PayoutWrite, key: IdempotencyKey, response: Response, session: Session,
    temporal: OptionalTemporal, settings: SettingsDep, redis: RedisDep,
):
    """Create up to 10,000 payouts in one request (JSON)."""
    merchant_id = _creating_merchant(principal, body.merchant_id)
    status, payload = await bulk.create_bulk_payout(
        session, temporal, settings, redis, merchant_id=merchant_id, actor=principal.sub, idempotency_key=key,
        mode=body.mode, items=body.items, source="json",
    )
    response.status_code = status
    return payload


create_bulk_payout.__doc__ = (create_bulk_payout.__doc__ or "") + _CREATE_DOC

_CSV_EXAMPLE = (
    "reference,amount,currency,method,beneficiary_name,beneficiary_iban,beneficiary_bic,metadata.employee\n"
    "payroll-0001,1250.00,EUR,sepa,Jane Doe,DE89370400440532013000,COBADEFFXXX,E-17\n")
_CSV_PART = "file"
_CSV_MAX_BYTES = 10 * 1024 * 1024
_CSV_BODY = {
    "requestBody": {"required": True, "content": {
        "text/csv": {"schema": {"type": "string"}, "example": _CSV_EXAMPLE},
        "multipart/form-data": {
            "schema": {"type": "object", "required": [_CSV_PART], "properties": {
                _CSV_PART: {"type": "string", "format": "binary",
                            "description": "the CSV file (`curl -F file=@payroll.csv`, an HTML file input)"}}},
            "encoding": {_CSV_PART: {"contentType": "text/csv, application/vnd.ms-excel, application/octet-stream"}},
        },
    }},
}


def _csv_problem(msg: str, loc: list[str]) -> Unprocessable:
    return Unprocessable(msg, extra={"errors": [{"loc": loc, "msg": msg, "type": "value_error"}]})


async def _csv_bytes(request: Request) -> bytes:
    """The CSV: the raw body, or the `file` part of a multipart/form-data upload."""
    if not request.headers.get("content-type", "").lower().startswith("multipart/form-data"):
        return await request.body()
    # a malformed multipart body is a 400 (Starlette's parser); one part of at most the CSV's cap
    async with request.form(max_files=1, max_fields=10, max_part_size=_CSV_MAX_BYTES) as form:
        part = form.get(_CSV_PART)
        if part is None:
            names = ", ".join(sorted(set(form.keys()))) or "none"
            raise _csv_problem(f"the CSV goes in a part named '{_CSV_PART}' (parts sent: {names})",
                               ["body", _CSV_PART])
        if isinstance(part, str):  # `curl -F 'file=<payroll.csv'`: the file's text as a plain field
            return part.encode("utf-8")
        return await part.read(_CSV_MAX_BYTES + 1)


@router.post(
    "/csv", response_model=BulkPayoutReport, status_code=201, openapi_extra=_CSV_BODY,
    responses={200: {"model": BulkPayoutReport, "description": "a replay: the original batch"},
               **problems(400, 401, 403, 404, 409, 413, 422)},
)
async def create_bulk_payout_csv(
    request: Request, principal: PayoutWrite, key: IdempotencyKey, response: Response, session: Session,
    temporal: OptionalTemporal, settings: SettingsDep, redis: RedisDep,
    mode: Literal["all_or_nothing", "partial"] = Query(description="as in the JSON request"),
    merchant_id: str | None = Query(default=None, max_length=64, description="platform roles only"),
):
    """The same batch as a CSV upload, UTF-8, one row per payout: the raw body
    (`Content-Type: text/csv`, `curl --data-binary @payroll.csv`) or a `multipart/form-data` form
    with the file in a part named `file` (`curl -F file=@payroll.csv`, a browser's file input).
    A spreadsheet's export is taken as it is: a UTF-8 BOM, CRLF line ends, quoted cells with
    commas or line breaks, and `;` as the separator when the header row has no comma.

    Columns: reference, amount, currency, method, priority, description, beneficiary_name,
    beneficiary_iban, beneficiary_bic, beneficiary_routing_number, beneficiary_account_number,
    beneficiary_account_type, beneficiary_sort_code, beneficiary_phone, beneficiary_operator and
    any `metadata.<key>`; empty cells are left out. Line numbers in the report are data rows."""
    raw = await _csv_bytes(request)
    if len(raw) > _CSV_MAX_BYTES:
        raise _csv_problem("the CSV exceeds 10 MiB", ["body"])
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise _csv_problem("the CSV is not UTF-8", ["body"]) from None
    items = bulk.items_from_csv(text)
    status, payload = await bulk.create_bulk_payout(
        session, temporal, settings, redis, merchant_id=_creating_merchant(principal, merchant_id),
        actor=principal.sub, idempotency_key=key, mode=mode, items=items, source="csv",
    )
    response.status_code = status
    return payload


@router.get("", response_model=BulkPayoutPage, responses=problems(401, 403, 422))
async def list_bulk_payouts(
    principal: PayoutRead, session: Session, merchant_id: str | None = None,
    limit: int = Query(default=50, ge=1, le=200), cursor: str | None = Query(default=None),
):
    """Bulk payouts, newest first, with counts per payout status and progress. Merchant users see
    only their own."""
    rows, next_cursor = await bulk.list_bulk_payouts(
        session, merchant_id=merchant_scope(principal, merchant_id), limit=limit, cursor=cursor)
    return {"data": rows, "next_cursor": next_cursor}


@router.get("/{bulk_payout_id}", response_model=BulkPayoutOut, responses=problems(401, 403, 404))
async def get_bulk_payout(bulk_payout_id: str, principal: PayoutRead, session: Session):
    """The batch's status: counts per payout status, intake (workflows started) and progress
    (payouts in a terminal status), to poll until `status` is `completed`."""
    return await bulk.get_bulk_payout(session, bulk_payout_id, merchant_scope(principal, None))


@router.get("/{bulk_payout_id}/items", response_model=ItemPage, responses=problems(401, 403, 404, 422))
async def list_bulk_payout_items(
    bulk_payout_id: str, principal: PayoutRead, session: Session,
    status: Literal["accepted", "rejected"] | None = None,
    after_line: int = Query(default=0, ge=0), limit: int = Query(default=1000, ge=1, le=10_000),
):
    """The per-item report, by line, paged (`after_line`)."""
    await bulk.get_bulk_payout(session, bulk_payout_id, merchant_scope(principal, None))
    items = await bulk.list_items(session, bulk_payout_id, status=status, after_line=after_line, limit=limit + 1)
    more = len(items) > limit
    items = items[:limit]
    return {"data": items, "next_after_line": items[-1]["line"] if more else None}
