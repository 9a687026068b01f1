"""Bank statements written from the formats' own specifications, for tests: an independent writer
that shares no code with core/reconciliation/statements.py (it imports nothing from payops).

- CSV: RFC 4180 (CRLF records, fields quoted when they hold the separator, a quote or a line
  break, quotes doubled), a header row; the separator `,` or `;`, the decimal mark `.` or `,`,
  optionally grouped thousands (with the other mark, or a space after a decimal comma).
- camt.053: ISO 20022 BankToCustomerStatementV08 (camt.053.001.08): GrpHdr, then one <Stmt> per
  statement with Acct, OPBD/CLBD balances, TxsSummry (TtlNtries with TtlNetNtry, TtlCdtNtries,
  TtlDbtNtries) and its <Ntry> elements (a batch: several <TxDtls> each with its own <Amt>).
  Amounts: xs:decimal with a point, as many fraction digits as the currency has.
- MT940: SWIFT MT940 Customer Statement Message, block 4 fields :20: :25: :28C: :60F: (:61: :86:)*
  :62F:, one message per statement; amounts 15d with a mandatory decimal comma; :61:
  value date YYMMDD, entry date MMDD, D/C mark, amount, N + 3-character type code, customer
  reference (16x), // bank reference (16x); :86: one line of at most 65 characters.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import date
from xml.sax.saxutils import escape

# ISO 4217 minor-unit digits of the currencies the tests use (from the ISO 4217 list itself)
ISO_4217_EXPONENT = {
    "USD": 2, "EUR": 2, "GBP": 2, "INR": 2, "CAD": 2, "AUD": 2, "CHF": 2, "SEK": 2, "NOK": 2, "DKK": 2, "PLN": 2,
    "NGN": 2, "KES": 2, "GHS": 2, "ZAR": 2, "XOF": 0, "XAF": 0, "JPY": 0, "KRW": 0, "BHD": 3, "KWD": 3,
    "OMR": 3, "JOD": 3, "TND": 3,
}


@dataclass
class Line:
    booking_date: date
    amount_minor: int  # > 0
    direction: str  # debit | credit
    end_to_end_id: str | None = None
    bank_reference: str | None = None
    counterparty: str | None = None
    description: str | None = None
    value_date: date | None = None
    batch: int | None = None  # camt.053: lines with the same batch number form one entry
    eref_in_info: bool = True  # MT940: the reference as /EREF/ in :86: (else the :61: customer reference)


@dataclass
class Statement:
    ref: str
    account: str
    currency: str
    opening_minor: int  # signed: negative is a debit balance
    lines: list[Line] = field(default_factory=list)
    period: tuple[date, date] | None = None
    # MT940 pages of one statement: :28C: page number, :60M:/:62M: intermediate balances
    page: int = 1
    intermediate_opening: bool = False
    intermediate_closing: bool = False

    @property
    def credit_minor(self) -> int:
        return sum(x.amount_minor for x in self.lines if x.direction == "credit")

    @property
    def debit_minor(self) -> int:
        return sum(x.amount_minor for x in self.lines if x.direction == "debit")

    @property
    def closing_minor(self) -> int:
        return self.opening_minor + self.credit_minor - self.debit_minor


def decimal_text(minor: int, currency: str, *, mark: str = ".", group: str | None = None,
                 always_mark: bool = False) -> str:
    """An unsigned amount as a decimal string with exactly the currency's fraction digits."""
    assert minor >= 0
    digits = ISO_4217_EXPONENT[currency]
    whole, frac = divmod(minor, 10**digits)
    text = str(whole)
    if group:
        parts = []
        while len(text) > 3:
            parts.insert(0, text[-3:])
            text = text[:-3]
        text = group.join([text, *parts])
    if digits:
        return f"{text}{mark}{frac:0{digits}d}"
    return f"{text}{mark}" if always_mark else text


# --- CSV (RFC 4180) -------------------------------------------------------------------------

def csv_grouping(decimal_mark: str, space_groups: bool = False) -> str:
    return " " if space_groups and decimal_mark == "," else {".": ",", ",": "."}[decimal_mark]


CSV_COLUMNS = ("booking_date", "value_date", "amount", "currency", "direction", "end_to_end_id", "bank_reference",
               "counterparty", "description")


def _csv_field(value: str, sep: str) -> str:
    if any(ch in value for ch in (sep, '"', "\r", "\n")) or value != value.strip():
        return '"' + value.replace('"', '""') + '"'
    return value


def write_csv(statement: Statement, *, sep: str = ",", decimal_mark: str = ".", group: bool = False,
              signed: bool = False, date_style: str = "iso", space_groups: bool = False) -> bytes:
    """`signed`: no direction column, debits written with a leading minus. `group`: thousands
    grouped with the other mark (`1,234.56`, `1.234,56`), or a space after a decimal comma when
    `space_groups` (`1 234,56`)."""
    columns = [c for c in CSV_COLUMNS if not (signed and c == "direction")]
    grouping = csv_grouping(decimal_mark, space_groups) if group else None

    def day(d: date | None) -> str:
        if d is None:
            return ""
        return d.isoformat() if date_style == "iso" else d.strftime("%d.%m.%Y")

    rows = [sep.join(columns)]
    for line in statement.lines:
        amount = decimal_text(line.amount_minor, statement.currency, mark=decimal_mark, group=grouping)
        values = {
            "booking_date": day(line.booking_date), "value_date": day(line.value_date),
            "amount": ("-" + amount) if signed and line.direction == "debit" else amount,
            "currency": statement.currency, "direction": line.direction,
            "end_to_end_id": line.end_to_end_id or "", "bank_reference": line.bank_reference or "",
            "counterparty": line.counterparty or "", "description": line.description or "",
        }
        rows.append(sep.join(_csv_field(values[c], sep) for c in columns))
    return ("\r\n".join(rows) + "\r\n").encode("utf-8")


# --- camt.053.001.08 ------------------------------------------------------------------------

CAMT_NS = "urn:iso:std:iso:20022:tech:xsd:camt.053.001.08"


def _amt(minor: int, ccy: str) -> str:
    return f'<Amt Ccy="{ccy}">{decimal_text(abs(minor), ccy)}</Amt>'


def _cd(minor: int) -> str:
    return f"<CdtDbtInd>{'CRDT' if minor >= 0 else 'DBIT'}</CdtDbtInd>"


def _tx_details(line: Line, ccy: str, with_amount: bool, version: str = "08") -> str:
    refs = "<Refs>" + (f"<AcctSvcrRef>{escape(line.bank_reference)}</AcctSvcrRef>" if line.bank_reference else "") \
        + f"<EndToEndId>{escape(line.end_to_end_id or 'NOTPROVIDED')}</EndToEndId></Refs>"
    party = ""
    if line.counterparty:
        role = "Cdtr" if line.direction == "debit" else "Dbtr"
        name = f"<Nm>{escape(line.counterparty)}</Nm>"
        party = f"<RltdPties><{role}>{name if version == '02' else f'<Pty>{name}</Pty>'}</{role}></RltdPties>"
    remittance = f"<RmtInf><Ustrd>{escape(line.description)}</Ustrd></RmtInf>" if line.description else ""
    amount = ""
    if with_amount and version == "02":  # .02: AmtDtls/TxAmt, the entry's direction
        amount = f"<AmtDtls><TxAmt>{_amt(line.amount_minor, ccy)}</TxAmt></AmtDtls>"
    elif with_amount:
        amount = _amt(line.amount_minor, ccy) + _cd(1 if line.direction == "credit" else -1)
    return f"<TxDtls>{refs}{amount}{party}{remittance}</TxDtls>"


def entries_of(statement: Statement) -> list[list[Line]]:
    """Lines grouped into entries: consecutive lines with the same batch number and direction."""
    entries: list[list[Line]] = []
    for line in statement.lines:
        last = entries[-1] if entries else None
        if (last and line.batch is not None and last[0].batch == line.batch
                and last[0].direction == line.direction and last[0].booking_date == line.booking_date
                and last[0].value_date == line.value_date):
            last.append(line)
        else:
            entries.append([line])
    return entries


def _camt_stmt(statement: Statement, *, wrong: str | None, version: str = "08") -> str:
    ccy = statement.currency
    entries = entries_of(statement)
    opening, closing = statement.opening_minor, statement.closing_minor
    credit_n = sum(1 for e in entries if e[0].direction == "credit")
    debit_n = len(entries) - credit_n
    total_sum = statement.credit_minor + statement.debit_minor
    net = statement.credit_minor - statement.debit_minor
    if wrong == "closing":
        closing += 1
    elif wrong == "sum":
        total_sum += 1
    elif wrong == "count":
        credit_n += 1
    elif wrong == "net":
        net = -net if net else 1

    def bal(code: str, minor: int, day: date) -> str:
        return (f"<Bal><Tp><CdOrPrtry><Cd>{code}</Cd></CdOrPrtry></Tp>{_amt(minor, ccy)}{_cd(minor)}"
                f"<Dt><Dt>{day.isoformat()}</Dt></Dt></Bal>")

    days = [x.booking_date for x in statement.lines] or [date(2026, 1, 1)]
    start, end = statement.period or (min(days), max(days))
    credits = statement.credit_minor
    debits = statement.debit_minor
    summary = (f"<TxsSummry><TtlNtries><NbOfNtries>{len(entries)}</NbOfNtries>"
               f"<Sum>{decimal_text(total_sum, ccy)}</Sum>"
               + (f"<TtlNetNtryAmt>{decimal_text(abs(net), ccy)}</TtlNetNtryAmt>{_cd(net)}</TtlNtries>"
                  if version == "02" else
                  f"<TtlNetNtry><Amt>{decimal_text(abs(net), ccy)}</Amt>{_cd(net)}</TtlNetNtry></TtlNtries>") +
               f"<TtlCdtNtries><NbOfNtries>{credit_n}</NbOfNtries><Sum>{decimal_text(credits, ccy)}</Sum>"
               f"</TtlCdtNtries><TtlDbtNtries><NbOfNtries>{debit_n}</NbOfNtries>"
               f"<Sum>{decimal_text(debits, ccy)}</Sum></TtlDbtNtries></TxsSummry>")
    body = []
    for n, entry in enumerate(entries, start=1):
        first = entry[0]
        amount = sum(x.amount_minor for x in entry)
        value = f"<ValDt><Dt>{first.value_date.isoformat()}</Dt></ValDt>" if first.value_date else ""
        details = "".join(_tx_details(x, ccy, with_amount=len(entry) > 1, version=version) for x in entry)
        status = "<Sts>BOOK</Sts>" if version == "02" else "<Sts><Cd>BOOK</Cd></Sts>"
        body.append(f"<Ntry><NtryRef>{n}</NtryRef>{_amt(amount, ccy)}"
                    f"{_cd(1 if first.direction == 'credit' else -1)}{status}"
                    f"<BookgDt><Dt>{first.booking_date.isoformat()}</Dt></BookgDt>{value}"
                    f"<BkTxCd><Domn><Cd>PMNT</Cd><Fmly><Cd>ICDT</Cd><SubFmlyCd>ESCT</SubFmlyCd></Fmly></Domn></BkTxCd>"
                    f"<NtryDtls>{'<Btch><NbOfTxs>%d</NbOfTxs></Btch>' % len(entry) if len(entry) > 1 else ''}"
                    f"{details}</NtryDtls></Ntry>")
    return (f"<Stmt><Id>{escape(statement.ref)}</Id><ElctrncSeqNb>1</ElctrncSeqNb>"
            f"<CreDtTm>{end.isoformat()}T23:00:00</CreDtTm>"
            f"<FrToDt><FrDtTm>{start.isoformat()}T00:00:00</FrDtTm><ToDtTm>{end.isoformat()}T23:59:59</ToDtTm></FrToDt>"
            f"<Acct><Id><IBAN>{escape(statement.account)}</IBAN></Id><Ccy>{ccy}</Ccy></Acct>"
            f"{bal('PRCD' if version == '02' else 'OPBD', opening, start)}{bal('CLBD', closing, end)}{summary}{''.join(body)}</Stmt>")


def write_camt053(statements: list[Statement], *, wrong: dict[int, str] | None = None, version: str = "08") -> bytes:
    """`wrong`: statement index -> which declared figure to falsify (closing, sum, count, net).
    `version` "02": camt.053.001.02 (TtlNetNtryAmt, Cdtr/Nm, TxDtls/AmtDtls/TxAmt, Sts as text,
    the opening balance as PRCD)."""
    wrong = wrong or {}
    stmts = "".join(_camt_stmt(s, wrong=wrong.get(i), version=version) for i, s in enumerate(statements))
    ns = CAMT_NS.replace(".08", f".{version}")
    return (f'<?xml version="1.0" encoding="UTF-8"?>\n<Document xmlns="{ns}"><BkToCstmrStmt>'
            f"<GrpHdr><MsgId>MSG-{len(statements)}</MsgId><CreDtTm>2026-12-01T06:00:00</CreDtTm></GrpHdr>"
            f"{stmts}</BkToCstmrStmt></Document>\n").encode("utf-8")


# --- MT940 ----------------------------------------------------------------------------------


def swift_amount(minor: int, currency: str) -> str:
    return decimal_text(minor, currency, mark=",", always_mark=True)


def mt940_info(line: Line) -> str:
    """The :86: text this writer puts on a line (structured /EREF/ and /NAME/ subfields)."""
    parts = []
    if line.end_to_end_id and line.eref_in_info:
        parts.append(f"/EREF/{line.end_to_end_id}")
    if line.counterparty:
        parts.append(f"/NAME/{line.counterparty}")
    if line.description:
        parts.append(f"/REMI/{line.description}")
    return ("".join(parts) + "/") if parts else "NONE"


def split_pages(statement: Statement, at: int) -> list[Statement]:
    """An MT940 statement sent as two messages: the first ends with an intermediate closing
    balance (:62M:), the second opens with it (:60M:)."""
    first = replace(statement, lines=statement.lines[:at], intermediate_closing=True)
    second = replace(statement, lines=statement.lines[at:], opening_minor=first.closing_minor, page=2,
                     intermediate_opening=True)
    return [first, second]


def _mt940_message(statement: Statement, number: int, wrong: str | None) -> str:
    ccy = statement.currency

    def balance(tag: str, minor: int, day: date) -> str:
        return f":{tag}:{'C' if minor >= 0 else 'D'}{day.strftime('%y%m%d')}{ccy}{swift_amount(abs(minor), ccy)}"

    days = [x.booking_date for x in statement.lines] or [date(2026, 1, 1)]
    closing = statement.closing_minor + (1 if wrong == "closing" else 0)
    fields = [f":20:{statement.ref}", f":25:{statement.account}", f":28C:{number:05d}/{statement.page:03d}",
              balance("60M" if statement.intermediate_opening else "60F", statement.opening_minor, min(days))]
    for i, line in enumerate(statement.lines):
        value = line.value_date or line.booking_date
        customer = line.end_to_end_id if line.end_to_end_id and not line.eref_in_info else "NONREF"
        bank = f"//{line.bank_reference}" if line.bank_reference else ""
        fields.append(f":61:{value.strftime('%y%m%d')}{line.booking_date.strftime('%m%d')}"
                      f"{'D' if line.direction == 'debit' else 'C'}{swift_amount(line.amount_minor, ccy)}"
                      f"NTRF{customer}{bank}")
        fields.append(f":86:{mt940_info(line)}")
    fields.append(balance("62M" if statement.intermediate_closing else "62F", closing, max(days)))
    return "\r\n".join(fields)


def write_mt940(statements: list[Statement], *, wrong: dict[int, str] | None = None) -> bytes:
    """One SWIFT message per statement, each in its {1:}{2:}{4: ... -} envelope."""
    wrong = wrong or {}
    messages = []
    for i, s in enumerate(statements):
        messages.append("{1:F01BANKDEFFAXXX0000000000}{2:O9400000261201BANKDEFFAXXX00000000002612010000N}{4:\r\n"
                        + _mt940_message(s, i + 1, wrong.get(i)) + "\r\n-}")
    return "\r\n".join(messages).encode("ascii")
