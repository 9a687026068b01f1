"""The bulk payout CSV reader (core.payouts.bulk.items_from_csv) on what spreadsheets write: any
cell text survives a BOM, CRLF, quoting and either separator."""

from __future__ import annotations

import csv
import io

import pytest
from hypothesis import assume, given, settings, strategies as st

from core.payouts.bulk import items_from_csv
from core.platform.errors import Unprocessable

COLUMNS = ["reference", "amount", "description", "beneficiary_name", "metadata.note"]
# cell text a person types: letters, digits, punctuation incl. the separators and quotes, line breaks
cell = st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc"), include_characters="\r\n\t"),
               max_size=30)


@settings(max_examples=200, deadline=None)
@given(rows=st.lists(st.lists(cell, min_size=len(COLUMNS), max_size=len(COLUMNS)), min_size=1, max_size=5),
       delimiter=st.sampled_from([",", ";"]), terminator=st.sampled_from(["\r\n", "\n", "\r"]), bom=st.booleans())
def test_every_cell_reads_back_as_written(rows, delimiter, terminator, bom):
    # Python's writer quotes a CR or LF only when it is part of its line terminator; a spreadsheet
    # quotes any cell with a line break
    assume(not any(ch in c for r in rows for c in r for ch in "\r\n" if ch not in terminator))
    buf = io.StringIO()
    csv.writer(buf, delimiter=delimiter, lineterminator=terminator).writerows([COLUMNS, *rows])
    text = buf.getvalue()
    # the API decodes with utf-8-sig, which drops the BOM a spreadsheet writes
    raw = ("\ufeff" + text if bom else text).encode("utf-8")
    items = items_from_csv(raw.decode("utf-8-sig"))
    assert len(items) == len(rows)
    for got, row in zip(items, rows):
        expected: dict = {}
        cells = dict(zip(COLUMNS, row))
        for col in ("reference", "amount", "description"):
            if cells[col].strip():
                expected[col] = cells[col].strip()
        if cells["beneficiary_name"].strip():
            expected["beneficiary"] = {"name": cells["beneficiary_name"].strip()}
        if cells["metadata.note"].strip():
            expected["metadata"] = {"note": cells["metadata.note"].strip()}
        assert got == expected


def test_an_unknown_column_is_refused_whatever_the_separator():
    for text in ("reference,amout\r\nx,1\r\n", "reference;amout\r\nx;1\r\n"):
        with pytest.raises(Unprocessable) as exc:
            items_from_csv(text)
        assert "amout" in exc.value.detail


def test_a_classic_mac_export_with_cr_line_ends_reads():
    assert items_from_csv("reference,amount\rm-1,1.00\rm-2,2.00\r") == [
        {"reference": "m-1", "amount": "1.00"}, {"reference": "m-2", "amount": "2.00"}]


def test_an_unreadable_csv_is_a_422_with_its_line_not_a_crash():
    with pytest.raises(Unprocessable) as exc:
        items_from_csv("reference,description\r\nok,fine\r\nbig," + "x" * 200_000 + "\r\n")
    assert "after line 2" in exc.value.detail  # the header and the row "ok"


def test_an_unquoted_thousands_separator_refuses_the_file_instead_of_paying_the_first_digits():
    """`1,500.00` unquoted in a comma-separated file is two cells: the row would read amount "1"
    and shift every later cell. The file is refused, naming the line."""
    text = "reference,amount,currency,description\r\nr-1,25.00,EUR,rent\r\nr-2,1,500.00,EUR,bonus\r\n"
    with pytest.raises(Unprocessable) as refused:
        items_from_csv(text)
    assert "line 3 has 5 cells but the header has 4" in str(refused.value.detail or refused.value)
    quoted = "reference,amount,currency,description\r\nr-2,\"1,500.00\",EUR,bonus\r\n"
    assert items_from_csv(quoted) == [{"reference": "r-2", "amount": "1,500.00", "currency": "EUR",
                                       "description": "bonus"}]
