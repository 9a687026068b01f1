"""Keyset pagination: the one codec of the opaque `cursor` every list endpoint returns.

A cursor is the sort key of a page's last row as JSON, URL-safe base64 without padding. Each
list decides its key (a [timestamp, id] pair, an id, a sort-tagged value); a cursor this API did
not return, or one that was altered, is a 422 (Unprocessable), never a 500.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar

from core.platform.errors import Unprocessable

T = TypeVar("T")

NOT_OURS = "cursor is not one this API returned"


def encode_cursor(key: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(key).encode()).decode().rstrip("=")


def decode_cursor(cursor: str, parse: Callable[[Any], T] = lambda key: key, *, message: str = NOT_OURS) -> T:
    """The key `encode_cursor` wrapped, checked by `parse` (which raises ValueError, KeyError,
    TypeError or IndexError on a key of the wrong shape)."""
    try:
        return parse(json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))))
    except (ValueError, KeyError, TypeError, IndexError, binascii.Error):
        raise Unprocessable(message) from None


def time_id_cursor(at: datetime, row_id: str) -> str:
    """The cursor of lists ordered by (a timestamp, an id), newest first."""
    return encode_cursor([at.isoformat(), row_id])


def _time_id(key: Any) -> tuple[datetime, str]:
    at, row_id = key
    return datetime.fromisoformat(at), str(row_id)


def decode_time_id_cursor(cursor: str) -> tuple[datetime, str]:
    return decode_cursor(cursor, _time_id)
