"""Bank files: payops's NACHA and pain.001 builders against independent readers — the carta-ach
parser and the official ISO 20022 pain.001.001.09 XSD (shipped by sepaxml) — and the sandbox
bank's refusal of malformed files."""

from __future__ import annotations

import os
import random
from datetime import date, datetime

import httpx
import pytest
from ach.parser import Parser
from lxml import etree

from core.rails.nacha import AchEntry, AchOriginator, build_nacha
from core.rails.pain001 import SepaEntry, build_pain001
from sandbox.bank_files import read_nacha, read_pain001

ROUTINGS = ["021000021", "011000015", "026009593", "121000358"]


def ach_entries(n: int) -> list[AchEntry]:
    rng = random.Random(n)
    return [AchEntry(payout_id=f"po_{i:032x}", routing_number=ROUTINGS[i % 4],
                     account_number=f"{rng.randrange(10**8, 10**12)}", account_type="savings" if i % 3 == 0 else "checking",
                     name=f"Benéficiary {i}", amount_minor=rng.randrange(1, 10**7)) for i in range(n)]


def sepa_entries(n: int) -> list[SepaEntry]:
    rng = random.Random(n)
    return [SepaEntry(payout_id=f"po_{i:032x}", iban="DE89370400440532013000", bic="COBADEFFXXX",
                      name=f"Jane & Co <{i}>", amount_minor=rng.randrange(1, 10**7), remittance=f"invoice {i}")
            for i in range(n)]


@pytest.mark.parametrize("n", [1, 7, 250])
def test_nacha_parses_with_carta_ach_and_control_totals_match(n):
    entries = ach_entries(n)
    content, control = build_nacha(entries, originator=AchOriginator(), created=datetime(2025, 3, 4, 17, 0),
                                   effective=date(2025, 3, 5))
    parsed = Parser(content.decode()).as_dict()
    fc = parsed["file_control"]
    [batch] = parsed["batches"]
    total = sum(e.amount_minor for e in entries)
    assert int(fc["credit_amount"]) == int(batch["batch_control"]["credit_amount"]) == total == control["total_credit_minor"]
    assert int(fc["entadd_count"]) == 2 * n == control["entry_addenda_count"]
    expected_hash = sum(int(e.routing_number[:8]) for e in entries) % 10**10
    assert int(fc["entry_hash"]) == int(batch["batch_control"]["entry_hash"]) == expected_hash
    assert [int(e["entry_detail"]["amount"]) for e in batch["entries"]] == [e.amount_minor for e in entries]
    assert [e["addenda"][0]["pmt_rel_info"].strip() for e in batch["entries"]] == [e.payout_id for e in entries]
    lines = content.decode().rstrip("\n").split("\n")
    assert all(len(line) == 94 for line in lines) and len(lines) % 10 == 0
    assert int(fc["block_count"]) == len(lines) // 10
    read, errors = read_nacha(content)
    assert errors == [] and len(read) == n


@pytest.mark.parametrize("n", [1, 9, 300])
def test_pain001_validates_against_the_official_xsd_and_sums_match(n):
    import sepaxml

    entries = sepa_entries(n)
    content, control = build_pain001(entries, message_id="bat_sepa_20250304T1700Z", created=datetime(2025, 3, 4, 18),
                                     execution_date=date(2025, 3, 5))
    xsd = os.path.join(os.path.dirname(sepaxml.__file__), "schemas", "pain.001.001.09.xsd")
    schema = etree.XMLSchema(etree.parse(xsd))
    doc = etree.fromstring(content)
    assert schema.validate(doc), schema.error_log
    ns = {"p": "urn:iso:std:iso:20022:tech:xsd:pain.001.001.09"}
    total = sum(e.amount_minor for e in entries)
    assert doc.findtext(".//p:GrpHdr/p:NbOfTxs", namespaces=ns) == str(n) == str(control["number_of_transactions"])
    assert doc.findtext(".//p:GrpHdr/p:CtrlSum", namespaces=ns) == f"{total // 100}.{total % 100:02d}" == control["control_sum"]
    assert [e.text for e in doc.findall(".//p:EndToEndId", ns)] == [e.payout_id for e in entries]
    read, errors = read_pain001(content)
    assert errors == [] and sum(e.amount_minor for e in read) == total


def test_the_bank_reader_refuses_tampered_nacha():
    content, _ = build_nacha(ach_entries(3), originator=AchOriginator(), created=datetime(2025, 3, 4, 17),
                             effective=date(2025, 3, 5))
    lines = content.decode().split("\n")
    i = next(k for k, ln in enumerate(lines) if ln.startswith("6"))
    lines[i] = lines[i][:29] + "0000000001" + lines[i][39:]  # change an amount, not the totals
    _, errors = read_nacha("\n".join(lines).encode())
    assert any("credit total" in e for e in errors)
    _, errors = read_nacha(content.replace(b"\n", b"X\n", 1))
    assert any("not 94" in e for e in errors)


def test_the_bank_reader_refuses_a_pain001_with_a_wrong_control_sum_or_schema():
    content, _ = build_pain001(sepa_entries(2), message_id="m1", created=datetime(2025, 3, 4, 18),
                               execution_date=date(2025, 3, 5))
    doc = content.decode()
    start = doc.index("<CtrlSum>") + len("<CtrlSum>")
    bad_sum = doc[:start] + "1.00" + doc[doc.index("</CtrlSum>"):]
    _, errors = read_pain001(bad_sum.encode())
    assert any("CtrlSum" in e for e in errors)
    _, errors = read_pain001(doc.replace("<ChrgBr>SLEV</ChrgBr>", "<ChrgBr>NOPE</ChrgBr>").encode())
    assert errors and errors[0].startswith("XSD")


async def test_sandbox_bank_accepts_files_idempotently_and_rejects_malformed_ones(bank):
    good, _ = build_nacha(ach_entries(2), originator=AchOriginator(), created=datetime(2025, 3, 4, 17),
                          effective=date(2025, 3, 5))
    async with httpx.AsyncClient(base_url=bank.url) as http:
        r = await http.post("/v1/files/nacha", content=good, headers={"Idempotency-Key": "file-1"})
        assert r.status_code == 201, r.text
        body = r.json()
        assert body["accepted_count"] == 2 and {e["status"] for e in body["entries"]} == {"accepted"}
        again = await http.post("/v1/files/nacha", content=good, headers={"Idempotency-Key": "file-1"})
        assert again.status_code == 200 and again.json()["entries"] == body["entries"]
        assert all(bank.payment(e["reference"])["accepted_count"] == 1 for e in body["entries"])
        bad = await http.post("/v1/files/nacha", content=good[:-200], headers={"Idempotency-Key": "file-2"})
        assert bad.status_code == 422 and bad.json()["error"] == "file_rejected"
        xml = await http.post("/v1/files/pain001", content=b"<Document/>", headers={"Idempotency-Key": "file-3"})
        assert xml.status_code == 422 and xml.json()["errors"][0].startswith("XSD")
