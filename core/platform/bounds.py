"""Bounds shared by every integer and date input the API accepts."""

from __future__ import annotations

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
MIN_YEAR = 1
MAX_YEAR = 9999
