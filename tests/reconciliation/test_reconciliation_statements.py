"""Bank statements are exact (issue 16, item 1): one test per statement defect the issue lists,
through the public upload API (POST /reconciliation/statements) on real PostgreSQL.

Each defect: a CSV decimal comma read 100 times too big; a duplicated line matching the same payout
twice; a debit for a failed payout reconciled; an upper-case reference falling back to amount and
date (and hiding a missing payout); a camt.053 file with several <Stmt> read only up to the first;
wrong control totals / closing balances (camt.053, MT940 :62F:) imported silently; missing payouts
not limited to the statement's account, currency and period.
"""

from __future__ import annotations

from datetime import date

import asyncpg
import pytest

BASE = "/api/v1/reconciliation"
IBAN_A = "DE89370400440532013000"  # mapped to connector bank_a
IBAN_B = "FR1420041010050500013M02606"  # mapped to connector bank_b


@pytest.fixture
def settings(settings):
    """This module's statements name accounts mapped to connectors (missing payouts per account)."""
    return settings.model_copy(update={"reconciliation_statement_account_connectors": {
        IBAN_A: ["bank_a"], IBAN_B: ["bank_b"]}})


@pytest.fixture
async def db(database_url):
    conn = await asyncpg.connect(database_url.replace("postgresql+asyncpg://", "postgresql://"))
    await conn.execute("INSERT INTO merchants (id, name, default_currency) VALUES ('mer_st', 'St', 'EUR')")
    yield conn
    await conn.close()


async def payout(db, pid: str, amount: int, *, currency: str = "EUR", status: str = "settled",
                 day: str = "2026-11-18", connector: str | None = "bank_a") -> None:
    await db.execute(
        "INSERT INTO payouts (id, merchant_id, idempotency_key, amount_minor, currency, method, priority, status, "
        "beneficiary_encrypted, beneficiary_masked, connector, settled_at) VALUES ($1, 'mer_st', $1, $2, $3, "
        "'sepa', 'normal', $4, '\\x00', '{}'::jsonb, $5, $6::date + time '10:00')",
        pid, amount, currency, status, connector, date.fromisoformat(day))


async def upload(client, headers, body: str, **params):
    return await client.post(f"{BASE}/statements", content=body.encode(), params=params, headers=headers)


async def results(db, run_id: str) -> list[tuple[str, str, str]]:
    rows = await db.fetch("SELECT category, match_key, details->>'matched_by' AS how FROM reconciliation_results "
                          "WHERE run_id = $1", run_id)
    return sorted((r["category"], r["match_key"] or "", r["how"] or "") for r in rows)


async def reconciled(db) -> set[str]:
    return {r["id"] for r in await db.fetch("SELECT id FROM payouts WHERE reconciled_at IS NOT NULL")}


def csv_statement(rows: list[str], sep: str = ",") -> str:
    header = sep.join(["booking_date", "amount", "currency", "direction", "end_to_end_id", "bank_reference"])
    return "\n".join([header, *rows]) + "\n"


def camt(statements: list[str]) -> str:
    return ('<?xml version="1.0" encoding="UTF-8"?>\n'
            '<Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.053.001.08"><BkToCstmrStmt>'
            "<GrpHdr><MsgId>MSG-1</MsgId><CreDtTm>2026-11-20T06:00:00</CreDtTm></GrpHdr>"
            + "".join(statements) + "</BkToCstmrStmt></Document>")


def camt_stmt(ref: str, iban: str, ccy: str, entries: list[tuple[str, str, str]], *, opening: str = "1000.00",
              closing: str | None = None, summary: tuple[int, str] | None = None) -> str:
    """entries: (amount with a decimal point, DBIT/CRDT, end-to-end id). Balances OPBD/CLBD and a
    TxsSummry (count, sum); closing/summary default to what the entries give."""
    def minor(text: str) -> int:
        whole, _, frac = text.partition(".")
        return int(whole) * 100 + int(frac or 0)

    net = sum(minor(a) * (1 if mark == "CRDT" else -1) for a, mark, _ in entries)
    close = minor(opening) + net
    closing = closing or f"{abs(close) // 100}.{abs(close) % 100:02d}"
    count, total = summary or (len(entries), "{}.{:02d}".format(*divmod(sum(minor(a) for a, _, _ in entries), 100)))
    body = "".join(
        f'<Ntry><Amt Ccy="{ccy}">{amount}</Amt><CdtDbtInd>{mark}</CdtDbtInd><Sts><Cd>BOOK</Cd></Sts>'
        f"<BookgDt><Dt>2026-11-18</Dt></BookgDt><ValDt><Dt>2026-11-18</Dt></ValDt>"
        f"<NtryDtls><TxDtls><Refs><EndToEndId>{e2e}</EndToEndId></Refs></TxDtls></NtryDtls></Ntry>"
        for amount, mark, e2e in entries)

    def bal(code: str, amount: str, mark: str) -> str:
        return (f'<Bal><Tp><CdOrPrtry><Cd>{code}</Cd></CdOrPrtry></Tp><Amt Ccy="{ccy}">{amount}</Amt>'
                f"<CdtDbtInd>{mark}</CdtDbtInd><Dt><Dt>2026-11-18</Dt></Dt></Bal>")

    return (f"<Stmt><Id>{ref}</Id><CreDtTm>2026-11-20T06:00:00</CreDtTm><Acct><Id><IBAN>{iban}</IBAN></Id>"
            f"<Ccy>{ccy}</Ccy></Acct><FrToDt><FrDtTm>2026-11-18T00:00:00</FrDtTm><ToDtTm>2026-11-19T23:59:59</ToDtTm>"
            f"</FrToDt>{bal('OPBD', opening, 'CRDT')}{bal('CLBD', closing, 'CRDT' if close >= 0 else 'DBIT')}"
            f"<TxsSummry><TtlNtries><NbOfNtries>{count}</NbOfNtries><Sum>{total}</Sum></TtlNtries></TxsSummry>"
            f"{body}</Stmt>")


def mt940(lines: list[tuple[str, str, str]], *, closing: str | None = None, opening: str = "1000,00") -> str:
    """lines: (D/C, amount with a decimal comma, EREF). :62F: defaults to what the lines give."""
    body = [":20:STMT-MT-1", f":25:{IBAN_A}", ":28C:00001/001", f":60F:C261118EUR{opening}"]
    net = 0
    for i, (mark, amount, eref) in enumerate(lines):
        body += [f":61:2611181118{mark}{amount}NTRFNONREF//B{i:04d}", f":86:/EREF/{eref}/NAME/Someone"]
        net += (1 if mark == "C" else -1) * int(amount.replace(",", ""))
    close = int(opening.replace(",", "")) + net
    closing = closing or f"{close // 100},{close % 100:02d}"
    body.append(f":62F:C261118EUR{closing}")
    return "{1:F01COBADEFFAXXX0000000000}{2:O9400712261118COBADEFFAXXX00000000002611180712N}{4:\r\n" + \
        "\r\n".join(body) + "\r\n-}"


class TestDecimalComma:
    async def test_a_decimal_comma_is_refused_unless_declared_and_then_read_exactly(self, client, token_for, db):
        await payout(db, "po_comma", 377191)
        h = token_for("finance_ops")
        body = csv_statement(['2026-11-18,"3771,91",EUR,debit,po_comma,B1'])
        r = await upload(client, h, body)
        assert r.status_code == 422, r.text  # before: imported as 377191,00 -> amount_mismatch
        assert r.headers["content-type"].startswith("application/problem+json")
        assert "statement_amount_ambiguous" in r.json()["type"]
        assert await db.fetchval("SELECT count(*) FROM bank_statements") == 0

        r = await upload(client, h, body, decimal_separator=",")
        assert r.status_code == 201, r.text
        run_id = r.json()["run"]["id"]
        assert await results(db, run_id) == [("matched", "po_comma", "reference")]
        assert await db.fetchval("SELECT amount_minor FROM bank_statement_lines") == 377191

    async def test_semicolon_csv_with_decimal_comma_and_grouping(self, client, token_for, db):
        await payout(db, "po_semi", 377191)
        await payout(db, "po_big", 123456789)
        body = csv_statement(["2026-11-18;3771,91;EUR;debit;po_semi;B1", "2026-11-18;1.234.567,89;EUR;debit;po_big;B2"],
                             sep=";")
        r = await upload(client, token_for("finance_ops"), body, decimal_separator=",")
        assert r.status_code == 201, r.text
        assert await results(db, r.json()["run"]["id"]) == [("matched", "po_big", "reference"),
                                                              ("matched", "po_semi", "reference")]


class TestOneToOne:
    async def test_a_duplicated_line_matches_once_and_the_copy_is_a_duplicate(self, client, token_for, db):
        await payout(db, "po_dup", 5000)
        line = "2026-11-18,50.00,EUR,debit,po_dup,B1"
        r = await upload(client, token_for("finance_ops"), csv_statement([line, line]))
        assert r.status_code == 201, r.text
        got = await results(db, r.json()["run"]["id"])
        assert got == [("duplicate_key", "po_dup", "reference"), ("matched", "po_dup", "reference")]
        assert await db.fetchval("SELECT count(*) FROM bank_statement_lines WHERE payout_id = 'po_dup'") == 1

    async def test_a_line_repeated_in_a_later_statement_is_a_duplicate(self, client, token_for, db):
        await payout(db, "po_dup2", 5000)
        h = token_for("finance_ops")
        first = await upload(client, h, csv_statement(["2026-11-18,50.00,EUR,debit,po_dup2,B1"]))
        second = await upload(client, h, csv_statement(["2026-11-18,50.00,EUR,debit,po_dup2,B9"]))
        assert first.status_code == second.status_code == 201
        assert await results(db, second.json()["run"]["id"]) == [("duplicate_key", "po_dup2", "reference")]


class TestUnpayable:
    @pytest.mark.parametrize("status", ["failed", "cancelled", "returned"])
    async def test_a_debit_for_an_unpayable_payout_is_a_status_mismatch(self, client, token_for, db, status):
        await payout(db, "po_dead", 2500, status=status)
        r = await upload(client, token_for("finance_ops"), csv_statement(["2026-11-18,25.00,EUR,debit,po_dead,B1"]))
        assert r.status_code == 201, r.text
        assert await results(db, r.json()["run"]["id"]) == [("status_mismatch", "po_dead", "reference")]
        assert await reconciled(db) == set()


class TestReferences:
    async def test_an_upper_case_reference_matches_by_reference_and_the_twin_stays_missing(self, client, token_for,
                                                                                           db):
        await payout(db, "po_upper", 5000)
        await payout(db, "po_twin", 5000)  # same amount and day, absent from the statement
        r = await upload(client, token_for("finance_ops"), csv_statement(['2026-11-18,50.00,EUR,debit," PO_UPPER ",B1']))
        assert r.status_code == 201, r.text
        got = await results(db, r.json()["run"]["id"])
        assert got == [("matched", "po_upper", "reference"), ("missing_left", "po_twin", "")]
        assert await reconciled(db) == {"po_upper"}

    async def test_a_probable_match_never_hides_a_missing_payout(self, client, token_for, db):
        await payout(db, "po_prob_a", 5000)
        await payout(db, "po_prob_b", 5000)
        r = await upload(client, token_for("finance_ops"), csv_statement(["2026-11-18,50.00,EUR,debit,,B1"]))
        assert r.status_code == 201, r.text
        got = await results(db, r.json()["run"]["id"])
        assert [x for x in got if x[0] == "probable_match"] == [("probable_match", "po_prob_a", "amount_date"),
                                                                ("probable_match", "po_prob_b", "amount_date")]
        assert [x[1] for x in got if x[0] == "missing_left"] == ["po_prob_a", "po_prob_b"]
        assert sum(1 for x in got if x[0] == "missing_right") == 1
        assert await reconciled(db) == set()


class TestEveryStatement:
    async def test_camt053_with_several_stmt_blocks_reads_them_all(self, client, token_for, db):
        await payout(db, "po_s1", 12500)
        await payout(db, "po_s2", 3000, connector="bank_b")
        await payout(db, "po_s3", 999, currency="GBP", connector="bank_b")
        body = camt([camt_stmt("S-1", IBAN_A, "EUR", [("125.00", "DBIT", "po_s1")]),
                     camt_stmt("S-2", IBAN_B, "EUR", [("30.00", "DBIT", "po_s2"), ("5.00", "CRDT", "NOTPROVIDED")]),
                     camt_stmt("S-3", IBAN_B, "GBP", [("9.99", "DBIT", "po_s3")])])
        r = await upload(client, token_for("finance_ops"), body)
        assert r.status_code == 201, r.text
        stmt, run = r.json()["statement"], r.json()["run"]
        assert stmt["line_count"] == 4
        assert [s["ref"] for s in run["summary"]["statements"]] == ["S-1", "S-2", "S-3"]
        assert await results(db, run["id"]) == [("matched", "po_s1", "reference"), ("matched", "po_s2", "reference"),
                                                ("matched", "po_s3", "reference")]
        assert await reconciled(db) == {"po_s1", "po_s2", "po_s3"}

    async def test_mt940_with_several_messages_reads_them_all(self, client, token_for, db):
        await payout(db, "po_m1", 12500)
        await payout(db, "po_m2", 3000)
        body = mt940([("D", "125,00", "po_m1")]) + "\r\n" + mt940([("D", "30,00", "po_m2")]).replace(
            "STMT-MT-1", "STMT-MT-2")
        r = await upload(client, token_for("finance_ops"), body)
        assert r.status_code == 201, r.text
        assert len(r.json()["run"]["summary"]["statements"]) == 2
        assert await reconciled(db) == {"po_m1", "po_m2"}


class TestTotals:
    @pytest.mark.parametrize("case", ["count", "sum", "closing"])
    async def test_camt053_wrong_summary_or_closing_balance_is_refused(self, client, token_for, db, case):
        await payout(db, "po_t1", 12500)
        entries = [("125.00", "DBIT", "po_t1"), ("20.00", "CRDT", "NOTPROVIDED")]
        good = camt([camt_stmt("T-1", IBAN_A, "EUR", entries)])
        bad = camt([camt_stmt("T-1", IBAN_A, "EUR", entries, **{
            "count": {"summary": (3, "145.00")}, "sum": {"summary": (2, "145.01")},
            "closing": {"closing": "859.00"}}[case])])  # 1000 - 125 + 20 = 895.00
        assert bad != good
        h = token_for("finance_ops")
        r = await upload(client, h, bad)
        assert r.status_code == 422, r.text
        assert "statement_totals_mismatch" in r.json()["type"]
        assert await db.fetchval("SELECT count(*) FROM bank_statements") == 0
        assert await reconciled(db) == set()
        r = await upload(client, h, good)
        assert r.status_code == 201, r.text
        checked = r.json()["run"]["summary"]["statements"][0]["checked"]
        assert "closing booked balance (CLBD)" in checked and "TtlNtries/Sum" in checked

    async def test_mt940_wrong_closing_balance_is_refused(self, client, token_for, db):
        await payout(db, "po_t2", 12500)
        h = token_for("finance_ops")
        bad = mt940([("D", "125,00", "po_t2")], closing="785,00")  # 1000 - 125 = 875,00
        r = await upload(client, h, bad)
        assert r.status_code == 422, r.text
        assert "statement_totals_mismatch" in r.json()["type"]
        assert await db.fetchval("SELECT count(*) FROM bank_statements") == 0
        r = await upload(client, h, mt940([("D", "125,00", "po_t2")]))
        assert r.status_code == 201, r.text
        assert r.json()["run"]["summary"]["statements"][0]["checked"] == ["closing balance (:62F:)"]


class TestMissingScope:
    async def test_missing_payouts_are_limited_to_the_statements_account_currency_and_period(self, client, token_for,
                                                                                             db):
        await payout(db, "po_on", 12500)  # on the statement
        await payout(db, "po_eur_missing", 4200)  # EUR, bank_a, in the period: really missing
        await payout(db, "po_gbp", 4200, currency="GBP")  # other currency
        await payout(db, "po_xof", 4200, currency="XOF")  # other currency
        await payout(db, "po_other_account", 4200, connector="bank_b")  # the other account's connector
        await payout(db, "po_before", 4200, day="2026-11-10")  # before the period
        await payout(db, "po_after", 4200, day="2026-11-25")  # after the period
        body = camt([camt_stmt("P-1", IBAN_A, "EUR", [("125.00", "DBIT", "po_on")])])
        r = await upload(client, token_for("finance_ops"), body)
        assert r.status_code == 201, r.text
        run = r.json()["run"]
        assert await results(db, run["id"]) == [("matched", "po_on", "reference"),
                                                ("missing_left", "po_eur_missing", "")]
        scope = run["summary"]["missing_scope"]
        assert scope == {"period": ["2026-11-18", "2026-11-19"], "currencies": ["EUR"], "connectors": ["bank_a"]}


class TestControlCharacters:
    @pytest.mark.parametrize("fmt", ["csv", "mt940"])
    async def test_a_nul_character_is_a_422_not_a_500(self, client, token_for, db, fmt):
        """PostgreSQL text cannot hold NUL: a statement carrying one is refused as a problem, and the
        connection stays usable (found by this test: CSV and MT940 text fields answered 500)."""
        await payout(db, "po_nul", 12500)
        h = token_for("finance_ops")
        body = (csv_statement(["2026-11-18,125.00,EUR,debit,po_nul,B\x001"]) if fmt == "csv"
                else mt940([("D", "125,00", "po_nul")]).replace("/NAME/Someone", "/NAME/Some\x00one"))
        r = await upload(client, h, body)
        assert r.status_code == 422, r.text
        assert r.headers["content-type"].startswith("application/problem+json")
        assert await db.fetchval("SELECT count(*) FROM bank_statements") == 0
        r = await upload(client, h, body.replace("\x00", ""))
        assert r.status_code == 201, r.text


class TestBeyondWhatIsStored:
    @pytest.mark.parametrize("case", ["amount", "counterparty", "reference", "account"])
    async def test_a_value_payops_cannot_hold_is_a_422_not_a_500(self, client, token_for, db, case):
        """Amounts beyond int64, and references, names or accounts longer than their columns, are
        refused with their line, never a 500 nor truncated (found by this test: all four were 500)."""
        h = token_for("finance_ops")
        if case == "account":
            body = camt([camt_stmt("L-1", "X" * 70, "EUR", [("125.00", "DBIT", "po_x")])])
        else:
            amount, name, ref = {"amount": ("92233720368547758.08", "N", "po_x"),
                                 "counterparty": ("1.00", "N" * 201, "po_x"),
                                 "reference": ("1.00", "N", "p" * 129)}[case]
            body = ("booking_date,amount,currency,direction,end_to_end_id,counterparty\n"
                    f"2026-11-18,{amount},EUR,debit,{ref},{name}\n")
        r = await upload(client, h, body)
        assert r.status_code == 422, r.text
        assert r.headers["content-type"].startswith("application/problem+json")
        assert await db.fetchval("SELECT count(*) FROM bank_statements") == 0
