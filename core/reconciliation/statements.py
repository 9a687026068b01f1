"""Bank statements → lines payops can match payouts against: CSV, ISO 20022 camt.053 XML and
SWIFT MT940 (read with the `mt-940` library, one message at a time).

Amounts become minor units (never floats) and are read exactly as the format writes them: camt.053
a decimal point (XML Schema decimal), MT940 a decimal comma (SWIFT), CSV a decimal point unless the
upload or its account says the file uses a decimal comma; an amount that could be either is refused,
never read with a silent factor of 100. Every statement of a file is read (camt.053 several <Stmt>,
MT940 several messages) and its control totals and balances are checked: a statement whose lines do
not add up to what it declares is refused. A line that cannot be money or a date is refused with its
line number, the whole file with it: a statement is either read completely or not at all.

Read as banks write them (tests/reconciliation/test_statement_spec_cases.py): every camt.053
`NtryDtls` of an entry; reversals (camt.053 `RvslInd`, MT940 `RD`/`RC`) marked as such; an MT940
field 86 subfield read across its 65-character line breaks, and a German (DK) structured field 86's
`EREF+`; field 61's MMDD entry date in the year nearest its value date.
"""

from __future__ import annotations

import csv
import hashlib
import io
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from core.platform.errors import Unprocessable, typed
from core.platform.money import CURRENCY_EXPONENTS, MAX_AMOUNT_MINOR

MAX_STATEMENT_BYTES = 20 * 1024 * 1024
DECIMAL_SEPARATORS = (".", ",")

AmountAmbiguous = typed(Unprocessable, "statement_amount_ambiguous", "Statement amount is ambiguous")
TotalsMismatch = typed(Unprocessable, "statement_totals_mismatch", "Statement does not add up")


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
    reversal: bool = False  # booked as the reversal of an earlier entry (camt.053 RvslInd, MT940 RD/RC)


@dataclass(slots=True)
class StatementTotals:
    """One statement of a file (a camt.053 <Stmt>, an MT940 message) as it declares itself, after
    its control totals and balances were checked against its entries."""
    ref: str | None
    account: str | None
    currency: str | None
    entries: int = 0
    credit_minor: int = 0
    debit_minor: int = 0
    opening_balance_minor: int | None = None  # signed: negative when the balance is a debit
    closing_balance_minor: int | None = None
    checked: list[str] = field(default_factory=list)  # which declared figures were verified

    def as_dict(self) -> dict[str, Any]:
        return {"ref": self.ref, "account": self.account, "currency": self.currency, "entries": self.entries,
                "credit_minor": self.credit_minor, "debit_minor": self.debit_minor,
                "opening_balance_minor": self.opening_balance_minor,
                "closing_balance_minor": self.closing_balance_minor, "checked": self.checked}


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
    statements: list[StatementTotals] = field(default_factory=list)

    def period(self) -> tuple[date, date]:
        """The days the statement covers: its declared period (camt.053 FrToDt), else its entries'
        booking days up to its closing balance's day; a statement with no entries covers the day of
        its closing balance (parse_statement refuses one that gives no day at all)."""
        days = [line.booking_date for line in self.lines]
        first = self.period_from or (min(days) if days else self.period_to)
        last = self.period_to or (max(days) if days else first)
        if first is None or last is None:
            raise Unprocessable("the statement has no entries and no date: it does not say which days it covers")
        return first, last

    def currencies(self) -> list[str]:
        """The statement's currencies: its accounts' (declared) and its lines'."""
        found = {s.currency for s in self.statements if s.currency} | {line.currency for line in self.lines}
        return sorted(found)

    def accounts(self) -> list[str]:
        found = [s.account for s in self.statements if s.account]
        return sorted(set(found + ([self.account] if self.account else [])))


def parse_statement(content: bytes, fmt: str | None = None, filename: str | None = None, *,
                    decimal_separator: str | None = None) -> ParsedStatement:
    """`decimal_separator` ("." or ",") says how a CSV statement writes amounts; without it a CSV
    amount with a comma is refused as ambiguous. camt.053 and MT940 fix theirs by specification."""
    if len(content) > MAX_STATEMENT_BYTES:
        raise Unprocessable(f"statement larger than {MAX_STATEMENT_BYTES // (1024 * 1024)} MB")
    if decimal_separator is not None and decimal_separator not in DECIMAL_SEPARATORS:
        raise Unprocessable("decimal_separator is '.' or ','")
    if b"\x00" in content:  # no format allows it (XML, SWIFT's character set, UTF-8 text) and no text column holds it
        line = content[:content.index(b"\x00")].count(b"\n") + 1
        raise Unprocessable(f"line {line}: the statement contains a NUL character")
    fmt = (fmt or _guess_format(content, filename)).lower()
    if fmt == "csv":
        parsed = parse_csv(content, decimal_separator=decimal_separator)
    elif fmt in ("camt053", "camt.053", "xml"):
        parsed = parse_camt053(content)
    elif fmt in ("mt940", "sta"):
        parsed = parse_mt940(content)
    else:
        raise Unprocessable(f"unsupported statement format {fmt!r}; supported: csv, camt053, mt940")
    _check_storable(parsed)
    parsed.period()  # a statement must say which days it covers
    return parsed


# what bank_statements / bank_statement_lines hold: a longer value is refused, never truncated
_MAX_LENGTHS = {"end_to_end_id": 128, "bank_reference": 128, "counterparty": 200}
MAX_ACCOUNT_LENGTH = 64


def _check_storable(parsed: ParsedStatement) -> None:
    for statement in parsed.statements:
        if statement.account is not None and len(statement.account) > MAX_ACCOUNT_LENGTH:
            raise Unprocessable(f"statement {statement.ref or '?'}: account {statement.account[:40]!r}... is longer "
                                f"than {MAX_ACCOUNT_LENGTH} characters")
    for line in parsed.lines:
        if line.amount_minor > MAX_AMOUNT_MINOR:
            raise Unprocessable(f"line {line.line_no}: amount {line.amount_minor} minor units is beyond what payops "
                                f"holds ({MAX_AMOUNT_MINOR})")
        for name, limit in _MAX_LENGTHS.items():
            value = getattr(line, name)
            if value is not None and len(value) > limit:
                raise Unprocessable(f"line {line.line_no}: {name} is {len(value)} characters, more than {limit}")


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


_SLASH_DATE = re.compile(r"\s*([0-9]{1,2})/([0-9]{1,2})/([0-9]{4})\s*")
SlashDatesAmbiguous = typed(Unprocessable, "statement_date_ambiguous", "Statement dates are ambiguous")


def _slash_order(values: list[str | None]) -> str:
    """How a CSV file writes its dd/dd/yyyy dates: "%d/%m/%Y" (most of the world) or "%m/%d/%Y"
    (the United States), read from the file itself: a first part above 12 is a day, a second part
    above 12 is a day. A file whose every such date could be either ("01/05/2026": 1 May or
    5 January) is refused, never guessed; as is a file that writes both."""
    parts = [m.groups() for v in values if v and (m := _SLASH_DATE.fullmatch(v))]
    day_first = any(int(a) > 12 for a, _, _ in parts)
    month_first = any(int(b) > 12 for _, b, _ in parts)
    if day_first and month_first:
        raise Unprocessable("the CSV statement writes dates both DD/MM/YYYY and MM/DD/YYYY")
    if month_first:
        return "%m/%d/%Y"
    if day_first or all(a == b for a, b, _ in parts):
        return "%d/%m/%Y"
    raise SlashDatesAmbiguous(
        f"dates like {next(v for v in values if v and _SLASH_DATE.fullmatch(v))!r} could be DD/MM/YYYY or "
        "MM/DD/YYYY and no date of the file tells which: write ISO dates (2026-05-01) or DD.MM.YYYY")


def _date(value: str | None, what: str, line_no: int, slash_order: str = "%d/%m/%Y") -> date:
    text = (value or "").strip()
    for parse in (date.fromisoformat, lambda t: datetime.strptime(t, "%d.%m.%Y").date(),
                  lambda t: datetime.strptime(t, slash_order).date(), lambda t: datetime.fromisoformat(t).date()):
        try:
            return parse(text)
        except ValueError:
            continue
    raise Unprocessable(f"line {line_no}: {what} {value!r} is not a date")


# --- amounts --------------------------------------------------------------------------------

# ASCII digits only (xs:decimal, the SWIFT character set): `\d` would also take other scripts' digits
_PLAIN = {".": re.compile(r"[0-9]+(?:\.[0-9]+)?"), ",": re.compile(r"[0-9]+(?:,[0-9]+)?")}
# digit grouping is read only when the decimal separator is known (then the other mark groups thousands)
_GROUPED = {".": re.compile(r"[0-9]{1,3}(?:,[0-9]{3})+(?:\.[0-9]+)?"),
            ",": re.compile(r"[0-9]{1,3}(?:[. ][0-9]{3})+(?:,[0-9]+)?")}


def to_minor_exact(text: str | None, currency: str, *, decimal_separator: str | None, where: str,
                   allow_zero: bool = False) -> int:
    """An unsigned decimal amount, as written, in minor units of `currency`. `decimal_separator`
    None: a decimal point only, and a comma is refused as ambiguous ("3771,91" is 3771.91 or
    377191 depending on the writer's locale)."""
    if currency not in CURRENCY_EXPONENTS:
        raise Unprocessable(f"{where}: unsupported currency {currency!r}")
    value = (text or "").strip()
    if not value:
        raise Unprocessable(f"{where}: amount is missing")
    if decimal_separator is None:
        if "," in value:
            raise AmountAmbiguous(
                f"{where}: amount {value!r} has a comma, which is a decimal separator in some locales and a "
                "thousands separator in others; upload with decimal_separator=',' or '.' to say which",
                extra={"amount": value})
        separator = "."
        plain = _PLAIN["."].fullmatch(value)
    else:
        separator = decimal_separator
        plain = _PLAIN[separator].fullmatch(value)
        if not plain and _GROUPED[separator].fullmatch(value):
            other = "," if separator == "." else ". "
            value = "".join(ch for ch in value if ch not in other)
            plain = True
    if not plain:
        raise Unprocessable(f"{where}: amount {text!r} is not a decimal number"
                            + (f" with {separator!r} as its decimal separator" if decimal_separator else ""))
    amount = Decimal(value.replace(",", ".")) if separator == "," else Decimal(value)
    # more fraction digits than the currency has are refused, zeros included (ISO 20022 and SWIFT
    # both require the currency's minor-unit digits at most): "1.000" JPY is a grouped 1000, not 1
    if -amount.as_tuple().exponent > CURRENCY_EXPONENTS[currency]:
        raise Unprocessable(f"{where}: amount {text!r} has more than {CURRENCY_EXPONENTS[currency]} decimal places "
                            f"for {currency}")
    scaled = amount.scaleb(CURRENCY_EXPONENTS[currency])
    minor = int(scaled)
    if minor == 0 and not allow_zero:
        raise Unprocessable(f"{where}: amount {text!r} must be positive")
    return minor


def _check(statement: StatementTotals, what: str, declared: int, found: int, fmt: str) -> None:
    if declared != found:
        raise TotalsMismatch(
            f"statement {statement.ref or '?'}: {what} is {declared}, the entries give {found}",
            extra={"statement_ref": statement.ref, "account": statement.account, "check": what,
                   "declared": declared, "computed": found, "format": fmt})
    statement.checked.append(what)


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


def _csv_delimiter(text: str) -> str:
    """The header row's separator: `,`, `;` (the usual one where the decimal mark is a comma) or a tab."""
    header = text.split("\n", 1)[0]
    counts = {d: header.count(d) for d in (",", ";", "\t")}
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] else ","


def parse_csv(content: bytes, *, decimal_separator: str | None = None) -> ParsedStatement:
    """Header row required; separated by `,`, `;` or tabs (read from the header). Columns
    (case-insensitive, aliases accepted): booking_date, amount, currency, direction (debit/credit,
    DBIT/CRDT, D/C; or a signed amount: negative = debit), end_to_end_id, bank_reference,
    counterparty, description, value_date."""
    try:
        text = content.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise Unprocessable("the CSV statement is not UTF-8") from None
    # newline="": the csv module sees the file's own line ends (a bare CR ends a record, as in RFC 4180 readers)
    reader = csv.DictReader(io.StringIO(text, newline=""), delimiter=_csv_delimiter(text))
    try:
        return _csv_rows(content, reader, decimal_separator)
    except csv.Error as exc:
        raise Unprocessable(f"line {reader.line_num}: not a well-formed CSV record: {exc}") from None


def _csv_rows(content: bytes, reader: csv.DictReader, decimal_separator: str | None) -> ParsedStatement:
    if not reader.fieldnames:
        raise Unprocessable("the CSV statement has no header row")
    columns = {name.strip().lower().replace(" ", "_"): name for name in reader.fieldnames}

    def column(key: str) -> str | None:
        return next((columns[a] for a in _CSV_ALIASES[key] if a in columns), None)

    cols = {key: column(key) for key in _CSV_ALIASES}
    for required in ("booking_date", "amount", "currency"):
        if cols[required] is None:
            raise Unprocessable(f"the CSV statement has no {required} column")
    rows = list(reader)
    date_columns = [cols[k] for k in ("booking_date", "value_date") if cols[k]]
    slash_order = _slash_order([row.get(c) for row in rows for c in date_columns])
    lines: list[StatementLine] = []
    for n, row in enumerate(rows, start=2):
        def get(key: str) -> str | None:
            name = cols[key]
            value = row.get(name) if name else None
            return value.strip() or None if isinstance(value, str) else None

        currency = (get("currency") or "").upper()
        raw_amount = get("amount") or ""
        negative = raw_amount.startswith("-")
        direction = _direction(get("direction"), negative, n)
        amount = to_minor_exact(raw_amount[1:] if raw_amount[:1] in "+-" else raw_amount, currency,
                                decimal_separator=decimal_separator, where=f"line {n}")
        lines.append(StatementLine(
            line_no=n, booking_date=_date(get("booking_date"), "booking_date", n, slash_order), amount_minor=amount,
            currency=currency, direction=direction, end_to_end_id=_reference(get("end_to_end_id")),
            bank_reference=get("bank_reference"), counterparty=get("counterparty"), description=get("description"),
            value_date=_date(get("value_date"), "value_date", n, slash_order) if get("value_date") else None,
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
    if value is None or value.strip().upper() == "NOTPROVIDED":
        return None
    return value.strip() or None


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


def _children(el: ET.Element | None, name: str) -> list[ET.Element]:
    return [c for c in el if _local(c.tag) == name] if el is not None else []


def _text(el: ET.Element | None, *path: str) -> str | None:
    found = _find(el, *path)
    return found.text.strip() if found is not None and found.text and found.text.strip() else None


def parse_camt053(content: bytes) -> ParsedStatement:
    """ISO 20022 BkToCstmrStmt (camt.053.001.02 to .08): every <Stmt> of the message; every Ntry,
    and every TxDtls inside a batched entry, becomes a line (a batch booked as one entry still
    matches payout by payout). Each statement's TxsSummry (entry counts and sums, net amount) and
    its booked balances (OPBD/PRCD + credits - debits = CLBD) are checked against its entries."""
    head = content[:2048].upper()
    if b"<!DOCTYPE" in head or b"<!ENTITY" in content.upper():
        raise Unprocessable("XML with a DTD or entities is refused")
    try:
        root = ET.fromstring(content)
    except ET.ParseError as exc:
        raise Unprocessable(f"not a well-formed XML document: {exc}") from None
    except (LookupError, ValueError) as exc:  # an unknown encoding="..." in the XML declaration
        raise Unprocessable(f"not a readable XML document: {exc}") from None
    statements = _children(_find(root, "BkToCstmrStmt"), "Stmt")
    if not statements:
        raise Unprocessable("not a camt.053 statement (no BkToCstmrStmt/Stmt)")
    parsed = ParsedStatement(format="camt053", content_hash=_hash(content), lines=[])
    for statement in statements:
        _camt_statement(parsed, statement)
    parsed.statement_ref = ", ".join(s.ref for s in parsed.statements if s.ref)[:128] or None
    accounts = parsed.accounts()
    parsed.account = accounts[0] if len(accounts) == 1 else (", ".join(accounts)[:64] or None)
    return parsed


def _camt_amount(el: ET.Element | None, currency: str, where: str, allow_zero: bool = False) -> int:
    return to_minor_exact(el.text if el is not None else None, currency, decimal_separator=".", where=where,
                          allow_zero=allow_zero)


def _signed(amount: int, indicator: str | None, where: str) -> int:
    mark = (indicator or "CRDT").strip().upper()
    if mark not in ("CRDT", "DBIT"):
        raise Unprocessable(f"{where}: CdtDbtInd {indicator!r} is neither CRDT nor DBIT")
    return amount if mark == "CRDT" else -amount


def _camt_statement(parsed: ParsedStatement, statement: ET.Element) -> None:
    ref = _text(statement, "Id")
    account = _text(statement, "Acct", "Id", "IBAN") or _text(statement, "Acct", "Id", "Othr", "Id")
    account_ccy = (_text(statement, "Acct", "Ccy") or "").upper() or None
    where = f"statement {ref or len(parsed.statements) + 1}"
    balances: dict[str, int] = {}
    balance_ccy: str | None = None
    closing_day: date | None = None
    for bal in _children(statement, "Bal"):
        code = (_text(bal, "Tp", "CdOrPrtry", "Cd") or _text(bal, "Tp", "CdOrPrtry", "Prtry") or "").upper()
        amount_el = _find(bal, "Amt")
        ccy = ((amount_el.get("Ccy") if amount_el is not None else "") or "").upper()
        balance_ccy = balance_ccy or ccy
        if code in ("OPBD", "PRCD", "CLBD") and code not in balances:
            balances[code] = _signed(_camt_amount(amount_el, ccy, f"{where} balance {code}", allow_zero=True),
                                     _text(bal, "CdtDbtInd"), where)
            if code == "CLBD" and (day := _text(bal, "Dt", "Dt") or _text(bal, "Dt", "DtTm")):
                closing_day = _date(day[:10], "closing balance Dt", 0)
    totals = StatementTotals(ref=ref, account=account, currency=account_ccy or balance_ccy)
    period = _find(statement, "FrToDt")
    if period is not None:
        start = _date((_text(period, "FrDtTm") or "")[:10], "FrDtTm", 0)
        end = _date((_text(period, "ToDtTm") or "")[:10], "ToDtTm", 0)
        parsed.period_from = min(parsed.period_from or start, start)
        parsed.period_to = max(parsed.period_to or end, end)
    elif closing_day is not None:  # no FrToDt: the statement runs to its closing balance's day
        parsed.period_to = max(parsed.period_to or closing_day, closing_day)
    credit_n = debit_n = 0
    booked_net = 0
    for entry in _children(statement, "Ntry"):
        totals.entries += 1
        n = totals.entries
        amount_el = _find(entry, "Amt")
        currency = ((amount_el.get("Ccy") if amount_el is not None else "") or "").upper()
        entry_amount = _camt_amount(amount_el, currency, f"{where} entry {n}")
        direction = _direction(_text(entry, "CdtDbtInd"), False, n)
        if direction == "credit":
            credit_n, totals.credit_minor = credit_n + 1, totals.credit_minor + entry_amount
        else:
            debit_n, totals.debit_minor = debit_n + 1, totals.debit_minor + entry_amount
        status = _text(entry, "Sts") or _text(entry, "Sts", "Cd")
        if status and status.upper() not in ("BOOK", "BOOKED"):
            parsed.warnings.append(f"{where} entry {n}: status {status} (not booked) skipped")
            continue
        booked_net += entry_amount if direction == "credit" else -entry_amount
        booking = _date((_text(entry, "BookgDt", "Dt") or _text(entry, "BookgDt", "DtTm") or "")[:10], "BookgDt", n)
        value = _text(entry, "ValDt", "Dt")
        entry_ref = _text(entry, "AcctSvcrRef")
        # NtryDtls is [0..*] (a bank may give each batched transaction its own): all their TxDtls
        details = [tx for block in _children(entry, "NtryDtls") for tx in _children(block, "TxDtls")]
        reversal = (_text(entry, "RvslInd") or "").lower() in ("true", "1")
        if len(details) <= 1:
            tx = details[0] if details else None
            parsed.lines.append(_camt_line(len(parsed.lines) + 1, entry, tx, entry_amount, currency, direction,
                                           booking, value, entry_ref, reversal))
            continue
        batch_net = 0
        for i, tx in enumerate(details, start=1):
            tx_amount = _find(tx, "Amt")
            if tx_amount is None:
                tx_amount = _find(tx, "AmtDtls", "TxAmt", "Amt")
            if tx_amount is None:
                raise Unprocessable(f"{where} entry {n}: batched transaction {i} has no amount")
            tx_currency = (tx_amount.get("Ccy") or currency).upper()
            amount = _camt_amount(tx_amount, tx_currency, f"{where} entry {n} transaction {i}")
            line = _camt_line(len(parsed.lines) + 1, entry, tx, amount, tx_currency, direction, booking, value,
                              entry_ref, reversal)
            batch_net += amount if line.direction == direction else -amount
            parsed.lines.append(line)
        if all((_find(tx, "Amt") if _find(tx, "Amt") is not None else _find(tx, "AmtDtls", "TxAmt", "Amt"))
               .get("Ccy", currency).upper() == currency for tx in details):
            _check(totals, f"entry {n} amount (sum of its {len(details)} transactions)", entry_amount, batch_net,
                   "camt053")
    summary = _find(statement, "TxsSummry")
    if summary is not None:
        _camt_summary(totals, summary, where, credit_n, debit_n)
    opening = balances.get("OPBD", balances.get("PRCD"))
    totals.opening_balance_minor, totals.closing_balance_minor = opening, balances.get("CLBD")
    if opening is not None and totals.closing_balance_minor is not None:
        _check(totals, "closing booked balance (CLBD)", totals.closing_balance_minor, opening + booked_net, "camt053")
    parsed.statements.append(totals)


def _camt_summary(totals: StatementTotals, summary: ET.Element, where: str, credit_n: int, debit_n: int) -> None:
    ccy = totals.currency or "XXX"

    def declared(el: ET.Element | None, what: str) -> int | None:
        return None if el is None else to_minor_exact(el.text, ccy, decimal_separator=".",
                                                      where=f"{where} {what}", allow_zero=True)

    def count(el: ET.Element | None) -> int | None:
        text = (el.text or "").strip() if el is not None else ""
        if el is None:
            return None
        if not re.fullmatch(r"[0-9]+", text):  # str.isdigit() also takes '²', which int() refuses
            raise Unprocessable(f"{where}: NbOfNtries {text!r} is not a number")
        return int(text)

    if ccy not in CURRENCY_EXPONENTS:
        return
    figures = (
        ("TtlNtries", totals.entries, totals.credit_minor + totals.debit_minor),
        ("TtlCdtNtries", credit_n, totals.credit_minor),
        ("TtlDbtNtries", debit_n, totals.debit_minor),
    )
    for tag, n, total in figures:
        block = _find(summary, tag)
        if block is None:
            continue
        if (declared_n := count(_find(block, "NbOfNtries"))) is not None:
            _check(totals, f"{tag}/NbOfNtries", declared_n, n, "camt053")
        if (declared_sum := declared(_find(block, "Sum"), f"{tag}/Sum")) is not None:
            _check(totals, f"{tag}/Sum", declared_sum, total, "camt053")
    block = _find(summary, "TtlNtries")
    net_el = _find(block, "TtlNetNtry", "Amt") if block is not None else None
    net_mark = _text(block, "TtlNetNtry", "CdtDbtInd") if block is not None else None
    if net_el is None and block is not None:  # camt.053.001.02 spells it TtlNetNtryAmt + CdtDbtInd
        net_el, net_mark = _find(block, "TtlNetNtryAmt"), _text(block, "CdtDbtInd")
    if net_el is not None:
        net = _signed(declared(net_el, "TtlNetNtry") or 0, net_mark, where)
        _check(totals, "TtlNtries/TtlNetNtry", net, totals.credit_minor - totals.debit_minor, "camt053")


def _camt_line(line_no: int, entry: ET.Element, tx: ET.Element | None, amount: int, currency: str,
               direction: str, booking: date, value: str | None, entry_ref: str | None,
               reversal: bool) -> StatementLine:
    if tx is not None and (tx_direction := _text(tx, "CdtDbtInd")):
        direction = _direction(tx_direction, False, line_no)
    party = None
    if tx is not None:
        party_role = "Cdtr" if direction == "debit" else "Dbtr"
        party = _text(tx, "RltdPties", party_role, "Nm") or _text(tx, "RltdPties", party_role, "Pty", "Nm")
    return StatementLine(
        line_no=line_no, booking_date=booking, amount_minor=amount, currency=currency.upper(), direction=direction,
        end_to_end_id=_reference(_text(tx, "Refs", "EndToEndId") if tx is not None else None),
        bank_reference=(_text(tx, "Refs", "AcctSvcrRef") if tx is not None else None) or entry_ref,
        counterparty=party,
        description=(_text(tx, "RmtInf", "Ustrd") if tx is not None else None) or _text(entry, "AddtlNtryInf"),
        value_date=_date(value[:10], "ValDt", line_no) if value else None, reversal=reversal,
    )


# --- MT940 ----------------------------------------------------------------------------------

# End-to-end reference in :86: — SWIFT-structured "/EREF/x/", German GVC "EREF+x" (up to the next
# "?nn" subfield or keyword); MT940 spells a missing reference NONREF.
_EREF = re.compile(r"(?:/EREF/([^/\n]+)|EREF\+((?:(?!\?\d\d|[A-Z]{4}\+)[^\n])+))")
_NAME = re.compile(r"/NAME/([^/\n]+)")
_DIRECTIONS = {"D": "debit", "C": "credit", "RD": "credit", "RC": "debit"}  # R = reversal of the other side
# a message starts at its :20: (transaction reference) field, at the start of a line
_MESSAGE_START = re.compile(r"(?m)^(?=:20:)")


def _unwrapped(details: str | None) -> str:
    """Field 86 is up to 6 lines of 65 characters, and a structured subfield (an EREF, a NAME) runs
    on across a line break: the breaks are the field's layout, not its content."""
    return re.sub(r"\r?\n", "", details or "")


def _eref(details: str | None, customer_reference: str | None, gvc_reference: str | None = None) -> str | None:
    if _reference(gvc_reference):
        return _reference(gvc_reference)
    match = _EREF.search(_unwrapped(details))
    if match:
        return _reference(match.group(1) or match.group(2))
    # the :61: customer reference is its first line (the library appends a GVC KREF+ on the next)
    ref = (customer_reference or "").strip().split("\n", 1)[0].strip()
    return None if not ref or ref.upper() == "NONREF" else ref


def parse_mt940(content: bytes) -> ParsedStatement:
    """SWIFT MT940 customer statements, every message of the file: every :61: statement line
    becomes a line; the end-to-end reference is the EREF of its :86: information, else the :61:
    customer reference (not NONREF). Each message's opening balance (:60F:/:60M:) plus its lines
    must give its closing balance (:62F:/:62M:)."""
    try:
        text = content.decode("utf-8")
    except UnicodeDecodeError:
        text = content.decode("latin-1")  # SWIFT's character set is a subset of both
    if ":61:" not in text and ":60F:" not in text and ":60M:" not in text:
        raise Unprocessable("not an MT940 statement (no :60F:/:61: fields)")
    messages = [m for m in _MESSAGE_START.split(text) if re.search(r"(?m)^:(?:20|25|60[FM]|61):", m)]
    parsed = ParsedStatement(format="mt940", content_hash=_hash(content), lines=[])
    for message in messages:
        _mt940_message(parsed, message)
    if not parsed.lines and all(s.closing_balance_minor is None for s in parsed.statements):
        raise Unprocessable("not an MT940 statement: no statement lines and no closing balance")
    parsed.statement_ref = ", ".join(s.ref for s in parsed.statements if s.ref)[:128] or None
    accounts = parsed.accounts()
    parsed.account = accounts[0] if len(accounts) == 1 else (", ".join(accounts)[:64] or None)
    if parsed.period_to is not None and parsed.lines:
        parsed.period_from = min(line.booking_date for line in parsed.lines)
    return parsed


def _entry_date(value_date: date, month: int, day: int) -> date:
    """Field 61's entry date is MMDD: its year is the one that puts it nearest the value date
    (a booking on 5 January of a payment valued 20 November is the next year's; one on 31
    December of a payment valued 10 February, forward-valued, the year before)."""
    candidates = []
    for year in (value_date.year - 1, value_date.year, value_date.year + 1):
        try:
            candidates.append(date(year, month, day))
        except ValueError:  # 29 February of a year without one
            continue
    return min(candidates, key=lambda d: abs((d - value_date).days))


def _mt940_balance(balance: Any, where: str) -> tuple[int, str, date | None]:
    amount = balance.amount
    currency = str(getattr(amount, "currency", "") or "").upper()
    minor = to_minor_exact(str(abs(amount.amount)), currency, decimal_separator=".", where=where, allow_zero=True)
    sign = -1 if str(getattr(balance, "status", "C")).upper() == "D" else 1
    day = getattr(balance, "date", None)
    return sign * minor, currency, date(day.year, day.month, day.day) if day is not None else None


def _mt940_message(parsed: ParsedStatement, message: str) -> None:
    import mt940  # why: the mt-940 package; imported here so CSV/camt.053 users never pay for it

    number = len(parsed.statements) + 1
    try:
        transactions = mt940.parse(message)
    except Exception as exc:  # noqa: BLE001 - the library raises RuntimeError/ValueError/KeyError alike
        if len(exc.args) == 3 and hasattr(exc.args[1], "id"):  # (message, tag, value) of a field it could not read
            detail = f"field :{exc.args[1].id}: {str(exc.args[2])[:120]!r} cannot be read"
        else:
            detail = str(exc)[:200]
        raise Unprocessable(f"not a valid MT940 statement (message {number}): {detail}") from None
    data = transactions.data
    ref = data.get("transaction_reference")
    where = f"statement {ref or number}"
    totals = StatementTotals(ref=ref, account=data.get("account_identification"), currency=None)
    opening = data.get("final_opening_balance") or data.get("intermediate_opening_balance")
    closing = data.get("final_closing_balance") or data.get("intermediate_closing_balance")
    if opening is not None:
        totals.opening_balance_minor, totals.currency, _ = _mt940_balance(opening, f"{where} :60F:")
    if closing is not None:
        totals.closing_balance_minor, closing_ccy, closing_day = _mt940_balance(closing, f"{where} :62F:")
        totals.currency = totals.currency or closing_ccy
        if closing_day is not None:
            parsed.period_to = max(parsed.period_to or closing_day, closing_day)
    net = 0
    for n, tx in enumerate(transactions, start=1):
        d = tx.data
        amount = d.get("amount")
        currency = str(d.get("currency") or getattr(amount, "currency", None) or "").upper()
        mark = str(d.get("status") or "").upper()
        direction = _DIRECTIONS.get(mark)
        if amount is None or direction is None:
            raise Unprocessable(f"{where} line {n}: no amount or debit/credit mark")
        amount_minor = to_minor_exact(str(abs(amount.amount)), currency, decimal_separator=".",
                                      where=f"{where} line {n}")
        totals.entries += 1
        if direction == "credit":
            totals.credit_minor += amount_minor
            net += amount_minor
        else:
            totals.debit_minor += amount_minor
            net -= amount_minor
        value_day = d.get("date")
        if value_day is None:
            raise Unprocessable(f"{where} line {n}: no date")
        value_date = date(value_day.year, value_day.month, value_day.day)
        entry_day = d.get("entry_date")
        booking_date = _entry_date(value_date, entry_day.month, entry_day.day) if entry_day else value_date
        # a German (DK) structured :86: ("116?00...?20EREF+...") the library reads into subfields
        # and then holds no transaction_details: its end-to-end reference and purpose are fields
        details = d.get("transaction_details") or (d.get("purpose") if d.get("transaction_code") else None) or None
        name = _NAME.search(_unwrapped(details))
        parsed.lines.append(StatementLine(
            line_no=len(parsed.lines) + 1, booking_date=booking_date,
            amount_minor=amount_minor, currency=currency, direction=direction,
            end_to_end_id=_eref(d.get("transaction_details"), d.get("customer_reference"),
                                d.get("end_to_end_reference")),
            bank_reference=(d.get("bank_reference") or "").strip() or None,
            counterparty=name.group(1).strip() if name else None,
            description=" ".join(details.split()) if details else None,
            value_date=value_date, reversal=mark.startswith("R"),
        ))
    if totals.opening_balance_minor is not None and totals.closing_balance_minor is not None:
        _check(totals, "closing balance (:62F:)", totals.closing_balance_minor, totals.opening_balance_minor + net,
               "mt940")
    parsed.statements.append(totals)
