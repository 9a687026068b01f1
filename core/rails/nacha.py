"""NACHA (ACH) file builder: one PPD/CCD credit batch per file, 94-character records, blocked by 10.

Control totals (entry/addenda count, entry hash, total credit) are computed here and returned
with the file, so the batch row records what the bank must agree with. Each entry carries the
payout id in a 05 addenda record: the reference that ties the bank's entry back to the payout.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from datetime import date, datetime

RECORD = 94


@dataclass(frozen=True)
class AchEntry:
    payout_id: str
    routing_number: str  # 9 digits, ABA checksum valid
    account_number: str
    account_type: str  # checking | savings
    name: str
    amount_minor: int


@dataclass(frozen=True)
class AchOriginator:
    immediate_destination: str = "091000019"  # the ODFI's bank (routing number)
    destination_name: str = "SANDBOX BANK"
    immediate_origin: str = "1234567890"  # company id as the bank knows it
    origin_name: str = "PAYOPS"
    company_name: str = "PAYOPS"
    company_id: str = "1234567890"
    odfi: str = "09100001"  # first 8 digits of the originating bank's routing number
    sec_code: str = "PPD"
    entry_description: str = "PAYOUT"


def _alpha(value: str, width: int, *, upper: bool = True) -> str:
    ascii_ = unicodedata.normalize("NFKD", value).encode("ascii", "ignore").decode()
    clean = "".join(ch if 32 <= ord(ch) < 127 else " " for ch in ascii_)
    return (clean.upper() if upper else clean)[:width].ljust(width)


def _num(value: int | str, width: int) -> str:
    s = str(value)
    if not s.isdigit() or len(s) > width:
        raise ValueError(f"{value!r} does not fit {width} digits")
    return s.rjust(width, "0")


def build_nacha(entries: list[AchEntry], *, originator: AchOriginator, created: datetime, effective: date,
                file_id_modifier: str = "A", batch_number: int = 1) -> tuple[bytes, dict]:
    """The file's bytes and its control totals."""
    if not entries:
        raise ValueError("a NACHA file needs at least one entry")
    o = originator
    records = [
        "1" + "01" + " " + _num(o.immediate_destination, 9) + _alpha(o.immediate_origin, 10)
        + created.strftime("%y%m%d") + created.strftime("%H%M") + file_id_modifier + "094" + "10" + "1"
        + _alpha(o.destination_name, 23) + _alpha(o.origin_name, 23) + _alpha("", 8),
        "5" + "220" + _alpha(o.company_name, 16) + _alpha("", 20) + _alpha(o.company_id, 10) + o.sec_code
        + _alpha(o.entry_description, 10) + effective.strftime("%y%m%d") + effective.strftime("%y%m%d")
        + "   " + "1" + _num(o.odfi, 8) + _num(batch_number, 7),
    ]
    entry_hash = total = 0
    for seq, e in enumerate(entries, start=1):
        trace = _num(o.odfi, 8) + _num(seq, 7)
        code = "32" if e.account_type == "savings" else "22"
        entry_hash += int(e.routing_number[:8])
        total += e.amount_minor
        records.append(
            "6" + code + _num(e.routing_number[:8], 8) + e.routing_number[8] + _alpha(e.account_number, 17)
            + _num(e.amount_minor, 10) + _alpha(e.payout_id[-15:], 15) + _alpha(e.name, 22) + "  " + "1" + trace
        )
        records.append("7" + "05" + _alpha(e.payout_id, 80, upper=False) + _num(1, 4) + _num(seq, 7))
    count = 2 * len(entries)
    hash10 = entry_hash % 10**10
    records.append(
        "8" + "220" + _num(count, 6) + _num(hash10, 10) + _num(0, 12) + _num(total, 12) + _alpha(o.company_id, 10)
        + " " * 19 + " " * 6 + _num(o.odfi, 8) + _num(batch_number, 7)
    )
    n_records = len(records) + 1
    blocks = -(-n_records // 10)
    records.append(
        "9" + _num(1, 6) + _num(blocks, 6) + _num(count, 8) + _num(hash10, 10) + _num(0, 12) + _num(total, 12)
        + " " * 39
    )
    records += ["9" * RECORD] * (blocks * 10 - n_records)
    assert all(len(r) == RECORD for r in records), "every NACHA record is 94 characters"
    control = {"batch_count": 1, "block_count": blocks, "entry_addenda_count": count, "entry_count": len(entries),
               "entry_hash": hash10, "total_debit_minor": 0, "total_credit_minor": total}
    return ("\n".join(records) + "\n").encode("ascii"), control
