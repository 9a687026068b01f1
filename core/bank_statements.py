"""Bank statements → lines payops can match payouts against: CSV, ISO 20022 camt.053 XML and
SWIFT MT940 (read with the `mt-940` library).

Amounts become minor units (never floats); a line that cannot be money or a date is refused with
its line number, the whole file with it: a statement is either read completely or not at all.
"""

from __future__ import annotations

import csv
import hashlib
import io
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from datetime import date, datetime

from core.errors import Unprocessable
from core.normalize import InvalidRecord, to_minor

MAX_STATEMENT_BYTES = 20 * 1024 * 1024


@dataclass(slots=True)
class StatementLine:
    line_no: int
    booking_date: date
    amount_minor: int
    currency: str
    direction: str  # debit | credit (from the account holder's side: a payout is a debit)
    end_to_end_id: str | None = None
    bank_reference: str | None = None
    counterparty: str | None = None
    description: str | None = None
    value_date: date | None = None


@dataclass(slots=True)
class ParsedStatement:
    format: str
    content_hash: str
    lines: list[StatementLine]
    statement_ref: str | None = None
    account: str | None = None
    period_from: date | None = None
    period_to: date | None = None
    warnings: list[str] = field(default_factory=list)

    def period(self) -> tuple[date, date]:
        days = [line.booking_date for line in self.lines]
        first = self.period_from or (min(days) if days else date.today())
        last = self.period_to or (max(days) if days else first)
        return first, last


def parse_statement(content: bytes, fmt: str | None = None, filename: str | None = None) -> ParsedStatement:
    if len(content) > MAX_STATEMENT_BYTES:
        raise Unprocessable(f"statement larger than {MAX_STATEMENT_BYTES // (1024 * 1024)} MB")
    fmt = (fmt or _guess_format(content, filename)).lower()
    if fmt == "csv":
        return parse_csv(content)
    if fmt in ("camt053", "camt.053", "xml"):
        return parse_camt053(content)
    if fmt in ("mt940", "sta"):
        return parse_mt940(content)
    raise Unprocessable(f"unsupported statement format {fmt!r}; supported: csv, camt053, mt940")


def _guess_format(content: bytes, filename: str | None) -> str:
    name = (filename or "").lower()
    head = content.lstrip()[:5]
    if name.endswith(".xml") or head in (b"<?xml", b"<Docu"):
        return "camt053"
    if name.endswith((".sta", ".mt940", ".940")) or head.startswith((b":20:", b"{1:")):
        return "mt940"
    return "csv"


def _hash(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


def _date(value: str | None, what: str, line_no: int) -> date:
    text = (value or "").strip()
    for parse in (date.fromisoformat, lambda t: datetime.strptime(t, "%d.%m.%Y").date(),
                  lambda t: datetime.strptime(t, "%d/%m/%Y").date(), lambda t: datetime.fromisoformat(t).date()):
        try:
            return parse(text)
        except ValueError:
            continue
    raise Unprocessable(f"line {line_no}: {what} {value!r} is not a date")


# --- CSV ------------------------------------------------------------------------------------

_CSV_ALIASES = {
    "booking_date": ("booking_date", "date", "booked", "posting_date"),
    "value_date": ("value_date", "valuedate"),
    "amount": ("amount",),
    "currency": ("currency", "ccy"),
    "direction": ("direction", "type", "credit_debit", "cdtdbtind"),
    "end_to_end_id": ("end_to_end_id", "endtoendid", "e2e", "end_to_end_reference", "reference"),
    "bank_reference": ("bank_reference", "bank_ref", "acctsvcrref", "transaction_id"),
    "counterparty": ("counterparty", "beneficiary", "name"),
    "description": ("description", "remittance", "details", "narrative"),
}


def parse_csv(content: bytes) -> ParsedStatement:
    """Header row required. Columns (case-insensitive, aliases accepted): booking_date, amount,
    currency, direction (debit/credit, DBIT/CRDT, D/C; or a signed amount: negative = debit),
    end_to_end_id, bank_reference, counterparty, description, value_date."""
    try:
        text = content.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise Unprocessable("the CSV statement is not UTF-8") from None
    reader = csv.DictReader(io.StringIO(text))
    if not reader.fieldnames:
        raise Unprocessable("the CSV statement has no header row")
    columns = {name.strip().lower().replace(" ", "_"): name for name in reader.fieldnames}

    def column(key: str) -> str | None:
        return next((columns[a] for a in _CSV_ALIASES[key] if a in columns), None)

    cols = {key: column(key) for key in _CSV_ALIASES}
    for required in ("booking_date", "amount", "currency"):
        if cols[required] is None:
            raise Unprocessable(f"the CSV statement has no {required} column")
    lines: list[StatementLine] = []
    for n, row in enumerate(reader, start=2):
        def get(key: str) -> str | None:
            name = cols[key]
            value = row.get(name) if name else None
            return value.strip() or None if isinstance(value, str) else None

        currency = (get("currency") or "").upper()
        raw_amount = get("amount") or ""
        negative = raw_amount.startswith("-")
        direction = _direction(get("direction"), negative, n)
        try:
            amount = to_minor(raw_amount.lstrip("-+"), currency)
        except InvalidRecord as exc:
            raise Unprocessable(f"line {n}: {exc}") from None
        lines.append(StatementLine(
            line_no=n, booking_date=_date(get("booking_date"), "booking_date", n), amount_minor=amount,
            currency=currency, direction=direction, end_to_end_id=_reference(get("end_to_end_id")),
            bank_reference=get("bank_reference"), counterparty=get("counterparty"), description=get("description"),
            value_date=_date(get("value_date"), "value_date", n) if get("value_date") else None,
        ))
    return ParsedStatement(format="csv", content_hash=_hash(content), lines=lines)


def _direction(value: str | None, negative: bool, line_no: int) -> str:
    if value is None:
        return "debit" if negative else "credit"
    v = value.strip().lower()
    if v in ("debit", "dbit", "d", "dr", "out"):
        return "debit"
    if v in ("credit", "crdt", "c", "cr", "in"):
        return "credit"
    raise Unprocessable(f"line {line_no}: direction {value!r} is neither debit nor credit")


def _reference(value: str | None) -> str | None:
    """camt.053 spells a missing end-to-end id NOTPROVIDED."""
    if value is None or value.upper() == "NOTPROVIDED":
        return None
    return value


# --- camt.053 -------------------------------------------------------------------------------


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _find(el: ET.Element | None, *path: str) -> ET.Element | None:
    """First descendant following `path` by local names, whatever the camt.053 version's namespace."""
    current = el
    for name in path:
        if current is None:
            return None
        current = next((c for c in current if _local(c.tag) == name), None)
    return current


def _text(el: ET.Element | None, *path: str) -> str | None:
    found = _find(el, *path)
    return found.text.strip() if found is not None and found.text and found.text.strip() else None


def parse_camt053(content: bytes) -> ParsedStatement:
    """ISO 20022 BkToCstmrStmt (camt.053.001.02 to .08): every Ntry, and every TxDtls inside a
    batched entry, becomes a line (a batch booked as one entry still matches payout by payout)."""
    head = content[:2048].upper()
    if b"<!DOCTYPE" in head or b"<!ENTITY" in content.upper():
        raise Unprocessable("XML with a DTD or entities is refused")
    try:
        root = ET.fromstring(content)
    except ET.ParseError as exc:
        raise Unprocessable(f"not a well-formed XML document: {exc}") from None
    statement = _find(root, "BkToCstmrStmt", "Stmt")
    if statement is None:
        raise Unprocessable("not a camt.053 statement (no BkToCstmrStmt/Stmt)")
    parsed = ParsedStatement(format="camt053", content_hash=_hash(content), lines=[])
    parsed.statement_ref = _text(statement, "Id")
    parsed.account = _text(statement, "Acct", "Id", "IBAN") or _text(statement, "Acct", "Id", "Othr", "Id")
    period = _find(statement, "FrToDt")
    if period is not None:
        parsed.period_from = _date((_text(period, "FrDtTm") or "")[:10], "FrDtTm", 0)
        parsed.period_to = _date((_text(period, "ToDtTm") or "")[:10], "ToDtTm", 0)
    n = 0
    for entry in (c for c in statement if _local(c.tag) == "Ntry"):
        n += 1
        amount_el = _find(entry, "Amt")
        currency = (amount_el.get("Ccy") if amount_el is not None else "") or ""
        direction = _direction(_text(entry, "CdtDbtInd"), False, n)
        booking = _date((_text(entry, "BookgDt", "Dt") or _text(entry, "BookgDt", "DtTm") or "")[:10], "BookgDt", n)
        value = _text(entry, "ValDt", "Dt")
        entry_ref = _text(entry, "AcctSvcrRef")
        ntry_details = _find(entry, "NtryDtls")
        details = [d for d in ntry_details if _local(d.tag) == "TxDtls"] if ntry_details is not None else []
        if (status := _text(entry, "Sts") or _text(entry, "Sts", "Cd")) and status.upper() not in ("BOOK", "BOOKED"):
            parsed.warnings.append(f"entry {n}: status {status} (not booked) skipped")
            continue
        if len(details) <= 1:
            tx = details[0] if details else None
            parsed.lines.append(_camt_line(n, entry, tx, amount_el, currency, direction, booking, value, entry_ref))
        else:
            for i, tx in enumerate(details, start=1):
                tx_amount = _find(tx, "Amt")
                if tx_amount is None:
                    tx_amount = _find(tx, "AmtDtls", "TxAmt", "Amt")
                if tx_amount is None:
                    raise Unprocessable(f"entry {n}: batched transaction {i} has no amount")
                parsed.lines.append(_camt_line(n * 1000 + i, entry, tx, tx_amount, tx_amount.get("Ccy") or currency,
                                               direction, booking, value, entry_ref))
    return parsed


def _camt_line(line_no: int, entry: ET.Element, tx: ET.Element | None, amount_el: ET.Element | None, currency: str,
               direction: str, booking: date, value: str | None, entry_ref: str | None) -> StatementLine:
    currency = currency.upper()
    try:
        amount = to_minor(amount_el.text if amount_el is not None else None, currency)
    except InvalidRecord as exc:
        raise Unprocessable(f"entry {line_no}: {exc}") from None
    if tx is not None and (tx_direction := _text(tx, "CdtDbtInd")):
        direction = _direction(tx_direction, False, line_no)
    party = None
    if tx is not None:
        party_role = "Cdtr" if direction == "debit" else "Dbtr"
        party = _text(tx, "RltdPties", party_role, "Nm") or _text(tx, "RltdPties", party_role, "Pty", "Nm")
    return StatementLine(
        line_no=line_no, booking_date=booking, amount_minor=amount, currency=currency, direction=direction,
        end_to_end_id=_reference(_text(tx, "Refs", "EndToEndId") if tx is not None else None),
        bank_reference=(_text(tx, "Refs", "AcctSvcrRef") if tx is not None else None) or entry_ref,
        counterparty=party,
        description=(_text(tx, "RmtInf", "Ustrd") if tx is not None else None) or _text(entry, "AddtlNtryInf"),
        value_date=_date(value[:10], "ValDt", line_no) if value else None,
    )


# --- MT940 ----------------------------------------------------------------------------------

# End-to-end reference in :86: — SWIFT-structured "/EREF/x/", German GVC "EREF+x" (up to the next
# "?nn" subfield or keyword); MT940 spells a missing reference NONREF.
_EREF = re.compile(r"(?:/EREF/([^/\n]+)|EREF\+((?:(?!\?\d\d|[A-Z]{4}\+)[^\n])+))")
_NAME = re.compile(r"/NAME/([^/\n]+)")
_DIRECTIONS = {"D": "debit", "C": "credit", "RD": "credit", "RC": "debit"}  # R = reversal of the other side


def _eref(details: str | None, customer_reference: str | None) -> str | None:
    match = _EREF.search(details or "")
    if match:
        return (match.group(1) or match.group(2)).strip() or None
    ref = (customer_reference or "").strip()
    return None if not ref or ref.upper() == "NONREF" else ref


def parse_mt940(content: bytes) -> ParsedStatement:
    """SWIFT MT940 customer statement: every :61: statement line becomes a line; the end-to-end
    reference is the EREF of its :86: information, else the :61: customer reference (not NONREF)."""
    import mt940  # the mt-940 package; imported here so CSV/camt.053 users never pay for it

    try:
        text = content.decode("utf-8")
    except UnicodeDecodeError:
        text = content.decode("latin-1")  # SWIFT's character set is a subset of both
    if ":61:" not in text and ":60F:" not in text and ":60M:" not in text:
        raise Unprocessable("not an MT940 statement (no :60F:/:61: fields)")
    try:
        transactions = mt940.parse(text)
    except Exception as exc:  # noqa: BLE001 - the library raises RuntimeError/ValueError/KeyError alike
        if len(exc.args) == 3 and hasattr(exc.args[1], "id"):  # (message, tag, value) of a field it could not read
            detail = f"field :{exc.args[1].id}: {str(exc.args[2])[:120]!r} cannot be read"
        else:
            detail = str(exc)[:200]
        raise Unprocessable(f"not a valid MT940 statement: {detail}") from None
    data = transactions.data
    parsed = ParsedStatement(format="mt940", content_hash=_hash(content), lines=[])
    parsed.statement_ref = data.get("transaction_reference")
    parsed.account = data.get("account_identification")
    closing = data.get("final_closing_balance") or data.get("intermediate_closing_balance")
    if closing is not None and getattr(closing, "date", None) is not None:
        parsed.period_to = date(closing.date.year, closing.date.month, closing.date.day)
    for n, tx in enumerate(transactions, start=1):
        d = tx.data
        amount = d.get("amount")
        currency = str(d.get("currency") or getattr(amount, "currency", None) or "").upper()
        direction = _DIRECTIONS.get(str(d.get("status") or "").upper())
        if amount is None or direction is None:
            raise Unprocessable(f"statement line {n}: no amount or debit/credit mark")
        try:
            amount_minor = to_minor(str(abs(amount.amount)), currency)
        except InvalidRecord as exc:
            raise Unprocessable(f"statement line {n}: {exc}") from None
        value_day = d.get("date")
        booking_day = d.get("entry_date") or value_day
        if booking_day is None:
            raise Unprocessable(f"statement line {n}: no date")
        details = d.get("transaction_details") or None
        name = _NAME.search(details or "")
        parsed.lines.append(StatementLine(
            line_no=n, booking_date=date(booking_day.year, booking_day.month, booking_day.day),
            amount_minor=amount_minor, currency=currency, direction=direction,
            end_to_end_id=_eref(details, d.get("customer_reference")),
            bank_reference=(d.get("bank_reference") or "").strip() or None,
            counterparty=name.group(1).strip() if name else None,
            description=" ".join(details.split()) if details else None,
            value_date=date(value_day.year, value_day.month, value_day.day) if value_day else None,
        ))
    if not parsed.lines and closing is None:
        raise Unprocessable("not an MT940 statement: no statement lines and no closing balance")
    if parsed.period_to is not None and parsed.lines:
        parsed.period_from = min(line.booking_date for line in parsed.lines)
    return parsed
