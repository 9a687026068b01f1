"""Bank statements as banks write them, from the formats' specifications (not from payops's own
writer): cases an adversarial read of camt.053 and MT940 found the parser got silently wrong, and
what reconciliation does with a reversal.

- camt.053 `NtryDtls` is [0..*]: each batched transaction may come in a block of its own.
- camt.053 `Ntry/RvslInd` and MT940 field 61 `RD`/`RC` mark a reversal: never a payment.
- MT940 field 86 is 6 lines of 65 characters; a structured EREF runs on across a line break.
- German (DK) structured field 86 (`116?00...?20EREF+...`) carries the end-to-end id in ?20-?29.
- Field 61's entry date is MMDD: its year is the one nearest the value date.
- A statement with no entries covers its closing balance's day, never "today".
- A CSV's dd/dd/yyyy dates are read in the order the file's own dates show, never guessed.
"""

from __future__ import annotations

from datetime import date

import pytest

from core.platform.errors import Unprocessable
from core.reconciliation.statements import parse_statement
from tests.reconciliation.test_reconciliation_statements import (  # noqa: F401 — fixtures
    db, payout, reconciled, results, settings, upload,
)

PO_1 = "po_0123456789abcdef0123456789abcdef"
PO_2 = "po_fedcba9876543210fedcba9876543210"
IBAN = "DE89370400440532013000"


def camt(entries: str, *, opening: str = "1000.00", closing: str = "1000.00", period: bool = True) -> bytes:
    frto = ("<FrToDt><FrDtTm>2026-01-05T00:00:00</FrDtTm><ToDtTm>2026-01-05T23:59:59</ToDtTm></FrToDt>"
            if period else "")
    return (f'<?xml version="1.0" encoding="UTF-8"?><Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.053.001.08">'
            f"<BkToCstmrStmt><GrpHdr><MsgId>M1</MsgId><CreDtTm>2026-01-06T06:00:00</CreDtTm></GrpHdr>"
            f"<Stmt><Id>S1</Id><CreDtTm>2026-01-06T06:00:00</CreDtTm><Acct><Id><IBAN>{IBAN}</IBAN></Id>"
            f"<Ccy>EUR</Ccy></Acct>{frto}"
            f'<Bal><Tp><CdOrPrtry><Cd>OPBD</Cd></CdOrPrtry></Tp><Amt Ccy="EUR">{opening}</Amt>'
            f"<CdtDbtInd>CRDT</CdtDbtInd><Dt><Dt>2026-01-05</Dt></Dt></Bal>"
            f'<Bal><Tp><CdOrPrtry><Cd>CLBD</Cd></CdOrPrtry></Tp><Amt Ccy="EUR">{closing}</Amt>'
            f"<CdtDbtInd>CRDT</CdtDbtInd><Dt><Dt>2026-01-05</Dt></Dt></Bal>{entries}</Stmt></BkToCstmrStmt></Document>"
            ).encode()


def tx(e2e: str, amount: str | None = None) -> str:
    amt = f'<Amt Ccy="EUR">{amount}</Amt>' if amount else ""
    return f"<TxDtls><Refs><EndToEndId>{e2e}</EndToEndId></Refs>{amt}</TxDtls>"


def entry(amount: str, mark: str, inner: str, *, reversal: bool = False, day: str = "2026-01-05") -> str:
    rvsl = "<RvslInd>true</RvslInd>" if reversal else ""
    return (f'<Ntry><Amt Ccy="EUR">{amount}</Amt><CdtDbtInd>{mark}</CdtDbtInd>{rvsl}<Sts><Cd>BOOK</Cd></Sts>'
            f"<BookgDt><Dt>{day}</Dt></BookgDt><ValDt><Dt>{day}</Dt></ValDt><AcctSvcrRef>BR1</AcctSvcrRef>"
            f"{inner}</Ntry>")


def lines_of(content: bytes | str, fmt: str):
    return parse_statement(content.encode() if isinstance(content, str) else content, fmt).lines


class TestCamt053:
    def test_each_batched_transaction_in_its_own_ntrydtls_is_a_line(self):
        two_blocks = entry("150.00", "DBIT", f"<NtryDtls>{tx(PO_1, '100.00')}</NtryDtls>"
                                             f"<NtryDtls>{tx(PO_2, '50.00')}</NtryDtls>")
        parsed = parse_statement(camt(two_blocks, closing="850.00"), "camt053")
        assert [(x.end_to_end_id, x.amount_minor, x.direction) for x in parsed.lines] == [
            (PO_1, 10000, "debit"), (PO_2, 5000, "debit")]
        assert "entry 1 amount (sum of its 2 transactions)" in parsed.statements[0].checked

    def test_a_reversal_is_marked(self):
        debit = entry("100.00", "DBIT", f"<NtryDtls>{tx(PO_1)}</NtryDtls>")
        back = entry("100.00", "CRDT", f"<NtryDtls>{tx(PO_1)}</NtryDtls>", reversal=True)
        got = lines_of(camt(debit + back), "camt053")
        assert [(x.direction, x.reversal) for x in got] == [("debit", False), ("credit", True)]

    def test_no_entries_and_no_period_covers_the_closing_balance_day(self):
        assert parse_statement(camt("", period=False), "camt053").period() == (date(2026, 1, 5), date(2026, 1, 5))


def mt940(*fields: str, closing: str = "C260105EUR1000,00") -> str:
    return "\r\n".join([":20:STMT1", f":25:{IBAN}", ":28C:1/1", ":60F:C260105EUR1000,00", *fields,
                        f":62F:{closing}", "-"])


class TestMt940:
    def test_an_eref_wrapped_at_65_characters_is_read_whole(self):
        info = f"/TRTP/SEPA OVERBOEKING/IBAN/NL91ABNA0417164300/BIC/ABNANL2A/NAME/ALICE EXAMPLE/REMI/Payout/EREF/{PO_1}/"
        wrapped = "\r\n".join(info[i:i + 65] for i in range(0, len(info), 65))
        assert PO_1[-1] == info[130]  # the id's last character is the first of the third line
        [line] = lines_of(mt940(":61:2601050105D100,00NTRFNONREF//BANKREF1", f":86:{wrapped}",
                                closing="C260105EUR900,00"), "mt940")
        assert line.end_to_end_id == PO_1 and line.counterparty == "ALICE EXAMPLE"

    def test_german_structured_86_gives_the_eref_not_the_kref(self):
        got = lines_of(mt940(
            ":61:2601050105DR100,00NMSCNONREF//BANKREF1",
            f":86:116?00SEPA-UEBERWEISUNG?100399?20EREF+{PO_1[:24]}",
            f"?21{PO_1[24:]}?22SVWZ+Auszahlung?30DEUTDEFFXXX",
            ":61:2601050105DR50,00NMSCNONREF//BANKREF2",
            f":86:116?00SEPA-UEBERWEISUNG?100399?20EREF+{PO_2[:24]}",
            f"?21{PO_2[24:]}?22KREF+SAMMLER-7?23SVWZ+Auszahlung", closing="C260105EUR850,00"), "mt940")
        assert [(x.end_to_end_id, x.amount_minor, x.description) for x in got] == [
            (PO_1, 10000, "Auszahlung"), (PO_2, 5000, "Auszahlung")]

    def test_rd_and_rc_are_reversals(self):
        got = lines_of(mt940(":61:2601050105RD100,00NTRFpo_a//B1", ":61:2601050105RC40,00NTRFpo_b//B2",
                             closing="C260105EUR1060,00"), "mt940")
        assert [(x.direction, x.reversal) for x in got] == [("credit", True), ("debit", True)]

    def test_the_entry_dates_year_is_the_one_nearest_the_value_date(self):
        # valued 20 November, booked 5 January: the next year's 5 January
        [late] = lines_of(mt940(":61:2511200105D100,00NTRFNONREF//B1", ":86:/EREF/po_x/",
                                closing="C260105EUR900,00"), "mt940")
        assert (late.value_date, late.booking_date) == (date(2025, 11, 20), date(2026, 1, 5))
        # forward-valued: valued 10 February, booked 31 December of the year before
        forward = mt940(":61:2602101231D100,00NTRFNONREF//B1", ":86:/EREF/po_x/", closing="C251231EUR900,00")
        [early] = lines_of(forward.replace(":60F:C260105", ":60F:C251230"), "mt940")
        assert (early.value_date, early.booking_date) == (date(2026, 2, 10), date(2025, 12, 31))

    def test_no_entries_covers_the_closing_balance_day_not_today(self):
        assert parse_statement(mt940().encode(), "mt940").period() == (date(2026, 1, 5), date(2026, 1, 5))


class TestCsvDates:
    HEAD = "booking_date,amount,currency,end_to_end_id\n"

    def test_a_us_file_is_read_month_first_when_one_date_says_so(self):
        got = lines_of(self.HEAD + "01/05/2026,-100.00,USD,po_1\n01/13/2026,-5.00,USD,po_2\n", "csv")
        assert [x.booking_date for x in got] == [date(2026, 1, 5), date(2026, 1, 13)]

    def test_a_day_first_file_is_read_day_first_when_one_date_says_so(self):
        got = lines_of(self.HEAD + "01/05/2026,-100.00,EUR,po_1\n13/01/2026,-5.00,EUR,po_2\n", "csv")
        assert [x.booking_date for x in got] == [date(2026, 5, 1), date(2026, 1, 13)]

    def test_dates_that_could_be_either_are_refused_not_guessed(self):
        with pytest.raises(Unprocessable) as refused:
            parse_statement((self.HEAD + "01/05/2026,-100.00,USD,po_1\n01/09/2026,-5.00,USD,po_2\n").encode(), "csv")
        assert refused.value.type == "statement_date_ambiguous"
        with pytest.raises(Unprocessable, match="both"):
            parse_statement((self.HEAD + "13/01/2026,-1.00,EUR,a\n01/13/2026,-1.00,EUR,b\n").encode(), "csv")
        # the same day and month is the same date either way
        [same] = lines_of(self.HEAD + "05/05/2026,-1.00,EUR,a\n", "csv")
        assert same.booking_date == date(2026, 5, 5)


class TestReversalsInReconciliation:
    async def test_a_payout_debited_then_reversed_is_not_reconciled_but_a_status_mismatch(
            self, client, token_for, db):  # noqa: F811
        await payout(db, PO_1, 10000, day="2026-01-05")
        debit = entry("100.00", "DBIT", f"<NtryDtls>{tx(PO_1)}</NtryDtls>")
        back = entry("100.00", "CRDT", f"<NtryDtls>{tx(PO_1)}</NtryDtls>", reversal=True)
        r = await upload(client, token_for("finance_ops"), camt(debit + back).decode())
        assert r.status_code == 201, r.text
        run = r.json()["run"]
        assert await results(db, run["id"]) == [("status_mismatch", PO_1, "")]
        assert await reconciled(db) == set()
        reason = await db.fetchval("SELECT details->>'reason' FROM reconciliation_results WHERE run_id = $1", run["id"])
        assert "reversed" in reason
        assert run["summary"]["reversal_lines"] == 1 and run["summary"]["debit_lines"] == 1

    async def test_a_reversal_in_a_later_statement_unreconciles_the_payout(self, client, token_for, db):  # noqa: F811
        await payout(db, PO_1, 10000, day="2026-01-05")
        h = token_for("finance_ops")
        first = await upload(client, h, camt(entry("100.00", "DBIT", f"<NtryDtls>{tx(PO_1)}</NtryDtls>"),
                                             closing="900.00").decode())
        assert await results(db, first.json()["run"]["id"]) == [("matched", PO_1, "reference")]
        assert await reconciled(db) == {PO_1}
        back = entry("100.00", "CRDT", f"<NtryDtls>{tx(PO_1)}</NtryDtls>", reversal=True, day="2026-01-06")
        later = camt(back, opening="900.00", closing="1000.00", period=False).decode().replace(
            "<Dt>2026-01-05</Dt></Dt></Bal>", "<Dt>2026-01-06</Dt></Dt></Bal>")
        second = await upload(client, h, later)
        assert second.status_code == 201, second.text
        assert await results(db, second.json()["run"]["id"]) == [("status_mismatch", PO_1, "")]
        assert await reconciled(db) == set()

    async def test_the_reversal_of_an_incoming_credit_is_never_matched_to_a_payout(self, client, token_for,
                                                                              db):  # noqa: F811
        await payout(db, "po_same_amount", 10000, day="2026-01-05")  # same amount and day, no reference
        back = entry("100.00", "DBIT", f"<NtryDtls>{tx('INCOMING-REF-9')}</NtryDtls>", reversal=True)
        r = await upload(client, token_for("finance_ops"), camt(back, closing="900.00").decode())
        assert r.status_code == 201, r.text
        assert await results(db, r.json()["run"]["id"]) == [("missing_left", "po_same_amount", "")]
        assert await reconciled(db) == set()
