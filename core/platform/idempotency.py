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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Update, and_, func, literal, select, text, update
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
    # the `context` columns claim_key read in its statement (only for a new request)
    context: Mapping[str, Any] = field(default_factory=dict)


async def claim_key(
    session: AsyncSession,
    *,
    merchant_id: str,
    scope: str,
    key: str,
    request_fingerprint: str,
    ttl_hours: float,
    context: Sequence[Any] = (),
) -> Claim:
    """Claim `key` for this request, or return what the earlier request with this key produced.

    Raises IdempotencyKeyReused when the key was used with a different request, and
    IdempotencyKeyInUse when the earlier request has not finished. An expired key is taken over.

    `context`: labelled scalar expressions (e.g. scalar subqueries) the caller needs when the
    request is new, read in the same statement (as of its snapshot) and returned as
    `Claim.context`: one round trip instead of a second statement.
    """
    expires_at = func.now() + text(f"interval '{float(ttl_hours)} hours'")
    stmt = (
        insert(idempotency_keys)
        .values(
            merchant_id=merchant_id,
            scope=scope,
            key=key,
            fingerprint=request_fingerprint,
            expires_at=expires_at,
        )
        .on_conflict_do_update(
            constraint="pk_idempotency_keys",
            set_={
                "fingerprint": request_fingerprint,
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
    same_key = and_(
        idempotency_keys.c.merchant_id == merchant_id,
        idempotency_keys.c.scope == scope,
        idempotency_keys.c.key == key,
    )
    claimed = stmt.cte("claimed")
    one = select(literal(1).label("one")).subquery("one")
    found = (
        await session.execute(
            select(
                select(func.count()).select_from(claimed).scalar_subquery().label("claimed"),
                idempotency_keys.c.fingerprint,
                idempotency_keys.c.resource_id,
                idempotency_keys.c.response_status,
                idempotency_keys.c.response_body,
                *context,
            ).select_from(one.outerjoin(idempotency_keys, same_key))
        )
    ).mappings().one()
    if found["claimed"]:
        return Claim(is_new=True, context={c.key: found[c.key] for c in context})
    row = found
    if row["fingerprint"] is None:
        # A concurrent request inserted the key and committed while this statement waited on it:
        # the statement's snapshot predates that row, so read it afresh.
        row = (await session.execute(select(idempotency_keys).where(same_key))).mappings().one()
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
