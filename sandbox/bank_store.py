"""The sandbox bank's durable record of payments: its own SQLite file, like a real bank's ledger.

Without it the sandbox bank forgot every payment when its process restarted, so after a
`payops up` restart of the bank, payops asked about payments the bank had accepted and heard
"unknown"; the same for payment files (NACHA, pain.001): a file asked about by its id after a
restart is still known, with its acceptance report. With a store (``--store PATH``; `payops up` puts it at ``<data dir>/bank/payments.sqlite3``)
every payment is written before the bank answers its acceptance, and again on every status
change (settled, failed, returned); a restarted bank loads them, resumes the lifecycle of those
still in flight (settle after ``settle_delay``, a planned return) and reports them by
``GET /v1/payments/{reference}`` and ``GET /v1/payments?since=``.

The row is the Payment dataclass as JSON (sandbox/bank.py owns its fields), plus the
submission counter the test controls report; a file row is its id, digest, report and bytes.
"""

from __future__ import annotations

import dataclasses
import json
import sqlite3
import threading
from pathlib import Path
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS payments (
    reference   TEXT PRIMARY KEY,
    data        TEXT NOT NULL,
    submissions INTEGER NOT NULL DEFAULT 1
);
CREATE TABLE IF NOT EXISTS momo_transfers (
    ref_id    TEXT PRIMARY KEY,
    reference TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS files (
    file_id TEXT PRIMARY KEY,
    sha256  TEXT NOT NULL,
    report  TEXT NOT NULL,
    content BLOB NOT NULL
);
"""


class BankStore:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # One connection, used from the bank's event loop thread; the lock only guards against
        # a test calling in from another thread.
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        # WAL + synchronous=NORMAL: a committed row survives the process being killed (only an
        # OS crash may lose the last commits), at a fraction of a millisecond a write.
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(SCHEMA)
        self._lock = threading.Lock()

    def save(self, payment: Any, submissions: int, momo_ref_ids: list[str] | None = None) -> None:
        data = json.dumps(dataclasses.asdict(payment), separators=(",", ":"))
        with self._lock:
            self._db.execute("BEGIN")
            try:
                self._db.execute(
                    "INSERT INTO payments (reference, data, submissions) VALUES (?, ?, ?) "
                    "ON CONFLICT (reference) DO UPDATE SET data = excluded.data, submissions = excluded.submissions",
                    (payment.reference, data, submissions),
                )
                for ref_id in momo_ref_ids or ():
                    self._db.execute(
                        "INSERT OR REPLACE INTO momo_transfers (ref_id, reference) VALUES (?, ?)",
                        (ref_id, payment.reference),
                    )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def save_file(self, file_id: str, sha256: str, report: dict[str, Any], content: bytes) -> None:
        """A received payment file and its acceptance report, written after its payments: a bank
        killed in between answers "no such file", the file is sent again, and its entries are
        recognised by reference (accepted once, never paid twice)."""
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO files (file_id, sha256, report, content) VALUES (?, ?, ?, ?)",
                (file_id, sha256, json.dumps(report, separators=(",", ":")), content),
            )

    def load(self) -> tuple[list[tuple[dict[str, Any], int]], dict[str, str]]:
        """([(payment fields, submissions)] in acceptance order, {momo ref id: reference})."""
        with self._lock:
            rows = self._db.execute("SELECT data, submissions FROM payments ORDER BY rowid").fetchall()
            momo = dict(self._db.execute("SELECT ref_id, reference FROM momo_transfers").fetchall())
        return [(json.loads(data), submissions) for data, submissions in rows], momo

    def load_files(self) -> dict[str, dict[str, Any]]:
        """{file id: {"sha256", "report", "content"}}, as the bank keeps them in memory."""
        with self._lock:
            rows = self._db.execute("SELECT file_id, sha256, report, content FROM files ORDER BY rowid").fetchall()
        return {file_id: {"sha256": sha, "report": json.loads(report), "content": bytes(content)}
                for file_id, sha, report, content in rows}

    def clear(self) -> None:
        with self._lock:
            self._db.execute("DELETE FROM payments")
            self._db.execute("DELETE FROM momo_transfers")
            self._db.execute("DELETE FROM files")

    def close(self) -> None:
        with self._lock:
            self._db.close()


def load_into(state: Any, payment_cls: type) -> int:
    """Fill a fresh BankState from its store; returns how many payments were loaded."""
    rows, momo = state.store.load()
    for fields, submissions in rows:
        known = {f.name for f in dataclasses.fields(payment_cls)}
        payment = payment_cls(**{k: v for k, v in fields.items() if k in known})
        state.payments[payment.reference] = payment
        state.submissions[payment.reference] = submissions
    state.momo_transfers.update(momo)
    state.files.update(state.store.load_files())
    return len(rows)
