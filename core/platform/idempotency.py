"""Idempotency keys: one row per (merchant, scope, key) holding the request's fingerprint and the
response it produced, so a retried request gets the original answer and never a second effect.

Claiming a key is one INSERT ... ON CONFLICT in the caller's transaction. The primary key makes a
concurrent duplicate's INSERT wait for the first transaction: when that commits, the duplicate sees
the stored response (a replay); if it rolls back, the duplicate's INSERT succeeds and it becomes
the new request. A row without a response is therefore only visible when the first request is in
another, still-open transaction (409 idempotency_key_in_use).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Update, and_, bindparam, func, literal, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from core.platform.errors import IdempotencyKeyInUse, IdempotencyKeyMissing, IdempotencyKeyReused, Unprocessable
from core.platform.tables import idempotency_keys

MAX_KEY_LENGTH = 255


def require_key(key: str | None) -> str:
    """The Idempotency-Key header's value, or the error that says what is wrong with it."""
    if key is None or not key.strip():
        raise IdempotencyKeyMissing("this request needs an Idempotency-Key header (any unique string ≤ 255 chars)")
    if len(key) > MAX_KEY_LENGTH:
        raise Unprocessable(
            f"Idempotency-Key is {len(key)} characters long; at most {MAX_KEY_LENGTH} are allowed",
            extra={"errors": [{"loc": ["header", "Idempotency-Key"], "msg": "too long", "type": "string_too_long"}]},
        )
    return key


def fingerprint(payload: Any) -> str:
    """sha256 of the canonical JSON of `payload` (sorted keys, no whitespace)."""
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(frozen=True)
class Claim:
    """The outcome of claiming a key: a new request, or the stored answer of the original one."""

    is_new: bool
    resource_id: str | None = None
    response_status: int | None = None
    response_body: dict | None = None
    # the `context` columns claim_key read in its statement (empty when a replay had to read the
    # key's record again: see claim_key)
    context: Mapping[str, Any] = field(default_factory=dict)


class ClaimContext:
    """Labelled scalar expressions a caller reads in claim_key's own statement, written with
    `bindparam()`s (their values go in claim_key's `context_params`). Make ONE per use, at module
    level: claim_key builds its statement once per (context, TTL) and keeps it here, so neither
    the statement nor its SQLAlchemy cache key is rebuilt per request."""

    def __init__(self, *columns: Any) -> None:
        self.columns = columns
        self._statements: dict[float, Any] = {}


NO_CONTEXT = ClaimContext()
_b = bindparam


def _same_key() -> Any:
    return and_(
        idempotency_keys.c.merchant_id == _b("claim_merchant_id"),
        idempotency_keys.c.scope == _b("claim_scope"),
        idempotency_keys.c.key == _b("claim_key"),
    )


def _claim_statement(ttl_hours: float, context: ClaimContext) -> Any:
    stmt = context._statements.get(ttl_hours)
    if stmt is not None:
        return stmt
    expires_at = func.now() + text(f"interval '{float(ttl_hours)} hours'")
    claim = (
        insert(idempotency_keys)
        .values(
            merchant_id=_b("claim_merchant_id"),
            scope=_b("claim_scope"),
            key=_b("claim_key"),
            fingerprint=_b("claim_fingerprint"),
            expires_at=expires_at,
        )
        .on_conflict_do_update(
            constraint="pk_idempotency_keys",
            set_={
                "fingerprint": _b("claim_fingerprint"),
                "resource_id": None,
                "response_status": None,
                "response_body": None,
                "created_at": func.now(),
                "expires_at": expires_at,
            },
            # only an expired key is taken over; a live one is left alone (no row returned)
            where=idempotency_keys.c.expires_at < func.now(),
        )
        .returning(idempotency_keys.c.key)
    )
    # One round trip for the common cases: the claim runs as a data-modifying CTE and the same
    # statement reads the key's existing record (as of the statement's snapshot) beside it.
    claimed = claim.cte("claimed")
    one = select(literal(1).label("one")).subquery("one")
    stmt = select(
        select(func.count()).select_from(claimed).scalar_subquery().label("claimed"),
        idempotency_keys.c.fingerprint,
        idempotency_keys.c.resource_id,
        idempotency_keys.c.response_status,
        idempotency_keys.c.response_body,
        *context.columns,
    ).select_from(one.outerjoin(idempotency_keys, _same_key()))
    context._statements[ttl_hours] = stmt
    return stmt


async def claim_key(
    session: AsyncSession,
    *,
    merchant_id: str,
    scope: str,
    key: str,
    request_fingerprint: str,
    ttl_hours: float,
    context: ClaimContext = NO_CONTEXT,
    context_params: Mapping[str, Any] | None = None,
) -> Claim:
    """Claim `key` for this request, or return what the earlier request with this key produced.

    Raises IdempotencyKeyReused when the key was used with a different request, and
    IdempotencyKeyInUse when the earlier request has not finished. An expired key is taken over.

    `context`: what the caller needs, read in the same statement (as of its snapshot; columns
    may refer to the key's record, `idempotency_keys`, e.g. its resource_id) and returned as
    `Claim.context`: one round trip instead of a second statement.
    """
    params = {"claim_merchant_id": merchant_id, "claim_scope": scope, "claim_key": key,
              "claim_fingerprint": request_fingerprint, **(context_params or {})}
    found = (await session.execute(_claim_statement(float(ttl_hours), context), params)).mappings().one()
    if found["claimed"]:
        return Claim(is_new=True, context={c.key: found[c.key] for c in context.columns})
    row = found
    context = {c.key: found[c.key] for c in context.columns}
    if row["fingerprint"] is None:
        # A concurrent request inserted the key and committed while this statement waited on it:
        # the statement's snapshot predates that row, so read it afresh.
        row = (await session.execute(select(idempotency_keys).where(_same_key()), params)).mappings().one()
        context = {}
    if row["fingerprint"] != request_fingerprint:
        raise IdempotencyKeyReused(
            "this Idempotency-Key was already used with a different request body; use a new key"
        )
    if row["response_status"] is None:
        raise IdempotencyKeyInUse("a request with this Idempotency-Key is still being processed; retry shortly")
    return Claim(
        is_new=False,
        resource_id=row["resource_id"],
        response_status=row["response_status"],
        response_body=row["response_body"],
        context=context,
    )


async def store_response(
    session: AsyncSession,
    *,
    merchant_id: str,
    scope: str,
    key: str,
    resource_id: str | None,
    status: int,
    body: dict,
) -> None:
    """Record the answer in the same transaction as the effect it describes."""
    await session.execute(
        response_update(merchant_id=merchant_id, scope=scope, key=key, resource_id=resource_id, status=status,
                        body=body)
    )


def response_update(
    *, merchant_id: str, scope: str, key: str, resource_id: str | None, status: int, body: dict
) -> Update:
    """The UPDATE recording the answer (for callers that batch it with the writes it describes)."""
    return (
        update(idempotency_keys)
        .where(
            idempotency_keys.c.merchant_id == merchant_id,
            idempotency_keys.c.scope == scope,
            idempotency_keys.c.key == key,
        )
        .values(resource_id=resource_id, response_status=status, response_body=body)
    )
