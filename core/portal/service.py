"""The merchant portal: a merchant's activity feed, and ops "view as" sessions.

A view-as session lets an ops user (permission `portal:view_as`) see a merchant's portal exactly
as its merchant_viewer would: the token it gets is a merchant_viewer of that merchant (so every
read is tenant-scoped like a merchant user's), carries the real actor in `view_as_by`, and the
API refuses every write under it (api/deps.py). Each session is recorded in `view_as_sessions`
(shown in the merchant's activity feed) and each request under it is in the API request log
under the ops user's subject. A session can be ended before it expires (`end_view_as`): from
then on every request under its token is refused (`ensure_view_as_live`, run by api/deps.py and
the live-updates endpoints for each view-as token).
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timezone
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from core.merchants.service import get_merchant
from core.platform.auth_tokens import Principal, mint_view_as_token
from core.platform.errors import Forbidden, NotFound, Unauthorized, Unprocessable, typed
from core.platform.pagination import decode_cursor, encode_cursor
from core.platform.roles import Role
from core.platform.settings import Settings
from core.portal import store
from core.portal.store import KINDS

ViewAsEnded = typed(Unauthorized, "view_as_ended", "The view-as session has ended")

FIRST_PAGE = (datetime(9999, 12, 31, tzinfo=timezone.utc), "")
MAX_LIMIT = 200


def _parse_cursor(key: Any) -> tuple[datetime, str]:
    at, uid = key
    if not isinstance(uid, str):
        raise ValueError("uid")
    return datetime.fromisoformat(at), uid


def parse_kinds(raw: list[str] | None) -> list[str]:
    names = [n.strip() for item in raw or [] for n in item.split(",") if n.strip()]
    if not names:
        return list(KINDS)
    unknown = sorted(set(names) - set(KINDS))
    if unknown:
        raise Unprocessable(f"unknown kind(s): {', '.join(unknown)}; use {', '.join(KINDS)}")
    return [k for k in KINDS if k in names]


async def activity(session: AsyncSession, *, merchant_id: str | None, kinds: list[str] | None, cursor: str | None,
                   limit: int) -> dict[str, Any]:
    """One page of the feed, newest first; `next_cursor` is None on the last page."""
    if not 1 <= limit <= MAX_LIMIT:
        raise Unprocessable(f"limit must be between 1 and {MAX_LIMIT}")
    before = decode_cursor(cursor, _parse_cursor) if cursor else FIRST_PAGE
    rows = await store.activity_page(session, merchant_id=merchant_id, kinds=parse_kinds(kinds), before=before,
                                     limit=limit + 1)
    more = len(rows) > limit
    rows = rows[:limit]
    data = [{
        "id": r["uid"], "at": r["at"], "kind": r["kind"], "event": r["event"], "merchant_id": r["merchant_id"],
        "ref": r["ref"], "amount_minor": r["amount_minor"], "currency": r["currency"],
        "detail": json.loads(r["detail"]) if isinstance(r["detail"], str) else r["detail"],
    } for r in rows]
    next_cursor = encode_cursor([rows[-1]["at"].isoformat(), rows[-1]["uid"]]) if more and rows else None
    return {"data": data, "next_cursor": next_cursor}


async def start_view_as(session: AsyncSession, settings: Settings, principal: Principal, *, merchant_id: str,
                        reason: str) -> dict[str, Any]:
    """Open an audited, read-only view-as session of `merchant_id` for a platform user."""
    if principal.is_merchant_user or principal.view_as_by:
        raise Forbidden("only platform users acting as themselves may view as a merchant")
    reason = reason.strip()
    if len(reason) < 3:
        raise Unprocessable("say why you view this merchant's portal (reason, 3 characters or more)")
    merchant = await get_merchant(session, merchant_id)  # 404 for an unknown merchant
    session_id = f"vas_{uuid.uuid4().hex}"
    token, exp = mint_view_as_token(settings, actor=principal.sub, merchant_id=merchant_id, session_id=session_id,
                                    ttl_seconds=settings.view_as_ttl_seconds)
    row = await store.insert_view_as_session(
        session, id=session_id, merchant_id=merchant_id, actor=principal.sub,
        actor_roles=json.dumps(sorted(r.value for r in principal.roles)), reason=reason,
        expires_at=datetime.fromtimestamp(exp, timezone.utc),
    )
    return {**row, "merchant_name": merchant.get("name"), "token": token,
            "actor_roles": row["actor_roles"] if isinstance(row["actor_roles"], list) else json.loads(row["actor_roles"])}


def _decoded(row: dict[str, Any]) -> dict[str, Any]:
    if isinstance(row["actor_roles"], str):
        row["actor_roles"] = json.loads(row["actor_roles"])
    return row


async def view_as_sessions(session: AsyncSession, merchant_id: str | None, limit: int = 100) -> list[dict[str, Any]]:
    return [_decoded(r) for r in await store.list_view_as_sessions(session, merchant_id, limit)]


async def end_view_as(session: AsyncSession, principal: Principal, session_id: str) -> dict[str, Any]:
    """End a view-as session before it expires: under its own token (the portal's "Exit view
    as"), by the ops user who opened it acting as themselves, or by an ops_admin. Ending a session
    that already ended answers it as it is (who ended it first, and when)."""
    own_token = principal.view_as_by is not None and principal.claims.get("view_as_session") == session_id
    if not own_token:
        if principal.view_as_by or not principal.is_platform_user:
            raise Forbidden("only the ops user who opened a view-as session, an ops_admin, or the session's "
                            "own token may end it")
    row = await store.get_view_as_session(session, session_id, for_update=True)
    if row is None:
        raise NotFound(f"no view-as session {session_id}")
    if not own_token and principal.sub != row["actor"] and Role.OPS_ADMIN not in principal.roles:
        raise Forbidden(f"view-as session {session_id} is {row['actor']}'s: only they or an ops_admin may end it")
    ended = await store.end_view_as_session(session, session_id, principal.view_as_by or principal.sub)
    return _decoded(ended or row)


async def ensure_view_as_live(session: AsyncSession, principal: Principal) -> None:
    """Refuses a view-as token whose session was ended (its expiry is the token's own `exp`)."""
    if principal.view_as_by is None:
        return
    session_id = str(principal.claims.get("view_as_session") or "")
    if await store.view_as_session_ended(session, session_id):
        raise ViewAsEnded(f"view-as session {session_id} was ended; sign in as yourself")


