"""How the sandbox bank reads the payment files it receives: NACHA (ACH) and ISO 20022
pain.001.001.09 (SEPA). Independent of payops's builders: NACHA records are read with the
third-party `carta-ach` parser and checked here against the NACHA rules a receiving bank applies
(record length, blocking, control totals, entry hash, ABA check digits); pain.001 is validated
against the official ISO 20022 XSD shipped by the `sepaxml` package, then its control sums.

Each reader returns (entries, errors); a non-empty `errors` means the bank rejects the file whole.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from functools import lru_cache


@dataclass
class FileEntry:
    reference: str
    amount_minor: int
    currency: str
    beneficiary: dict
    name: str


# --- NACHA -----------------------------------------------------------------------------------

CREDIT_CODES = {"22": "checking", "32": "savings", "23": "checking", "33": "savings"}
DEBIT_CODES = {"27", "28", "37", "38"}


def _aba_ok(nine: str) -> bool:
    if not re.fullmatch(r"[0-9]{9}", nine):
        return False
    d = [int(c) for c in nine]
    return (3 * (d[0] + d[3] + d[6]) + 7 * (d[1] + d[4] + d[7]) + (d[2] + d[5] + d[8])) % 10 == 0


def _int(value: str, field: str, errors: list[str]) -> int:
    if not value.strip().isdigit():
        errors.append(f"{field} is not numeric: {value!r}")
        return 0
    return int(value)


def read_nacha(content: bytes) -> tuple[list[FileEntry], list[str]]:
    from ach.parser import Parser  # carta-ach

    errors: list[str] = []
    try:
        text = content.decode("ascii")
    except UnicodeDecodeError:
        return [], ["a NACHA file is ASCII"]
    lines = text.rstrip("\n").split("\n")
    lines = [ln.rstrip("\r") for ln in lines]
    for i, line in enumerate(lines, start=1):
        if len(line) != 94:
            errors.append(f"record {i} is {len(line)} characters, not 94")
    if len(lines) % 10:
        errors.append(f"{len(lines)} records is not a whole number of blocks of 10")
    kinds = "".join(line[:1] for line in lines)
    if not re.fullmatch(r"1(5(67*)+8)+9(9*)", kinds):
        errors.append("records are not in the order file header, (batch header, entries, batch control)+, file control")
    if errors:
        return [], errors

    parsed = Parser(text).as_dict()
    header = parsed["file_header"]
    if header["record_size"] != "094" or header["blk_factor"] != "10" or header["format_code"] != "1":
        errors.append("file header must declare record size 094, blocking factor 10, format code 1")
    entries: list[FileEntry] = []
    file_hash = file_credit = file_count = 0
    for b, batch in enumerate(parsed["batches"], start=1):
        bh, bc = batch["batch_header"], batch["batch_control"]
        if bh["serv_cls_code"] not in ("200", "220"):
            errors.append(f"batch {b}: service class {bh['serv_cls_code']} (this bank takes credits only: 220)")
        batch_hash = batch_credit = batch_count = 0
        for e, entry in enumerate(batch["entries"], start=1):
            ed = entry["entry_detail"]
            where = f"batch {b} entry {e}"
            code = ed["transaction_code"]
            if code in DEBIT_CODES:
                errors.append(f"{where}: debit transaction code {code} not accepted")
                continue
            if code not in CREDIT_CODES:
                errors.append(f"{where}: unknown transaction code {code}")
                continue
            routing = ed["recv_dfi_id"] + ed["check_digit"]
            if not _aba_ok(routing):
                errors.append(f"{where}: receiving DFI {routing} fails the ABA check digit")
            amount = _int(ed["amount"], f"{where} amount", errors)
            if amount <= 0:
                errors.append(f"{where}: a credit entry needs a positive amount")
            batch_hash += _int(ed["recv_dfi_id"], f"{where} receiving DFI", errors)
            batch_credit += amount
            batch_count += 1 + len(entry["addenda"])
            if ed["add_rec_ind"] != "1" or len(entry["addenda"]) != 1:
                errors.append(f"{where}: this bank requires one 05 addenda carrying the payment reference")
                continue
            addenda = entry["addenda"][0]
            if addenda["addenda_type_code"] != "05":
                errors.append(f"{where}: addenda type {addenda['addenda_type_code']} (expected 05)")
            if addenda["ent_det_seq_num"] != ed["trace_num"][-7:]:
                errors.append(f"{where}: addenda does not point at its entry's trace number")
            reference = addenda["pmt_rel_info"].strip()
            if not reference:
                errors.append(f"{where}: empty payment reference")
            entries.append(FileEntry(
                reference=reference, amount_minor=amount, currency="USD", name=ed["ind_name"].strip(),
                beneficiary={"routing_number": routing, "account_number": ed["dfi_acnt_num"].strip(),
                             "account_type": CREDIT_CODES[code], "name": ed["ind_name"].strip()},
            ))
        if _int(bc["entadd_count"], f"batch {b} entry/addenda count", errors) != batch_count:
            errors.append(f"batch {b}: control entry/addenda count {bc['entadd_count']} != {batch_count}")
        if _int(bc["entry_hash"], f"batch {b} entry hash", errors) != batch_hash % 10**10:
            errors.append(f"batch {b}: control entry hash {bc['entry_hash']} != {batch_hash % 10**10}")
        if _int(bc["credit_amount"], f"batch {b} credit total", errors) != batch_credit:
            errors.append(f"batch {b}: control credit total {bc['credit_amount']} != {batch_credit}")
        if _int(bc["debit_amount"], f"batch {b} debit total", errors) != 0:
            errors.append(f"batch {b}: control debit total must be 0")
        file_hash += batch_hash
        file_credit += batch_credit
        file_count += batch_count
    fc = parsed["file_control"]
    if _int(fc["batch_count"], "file batch count", errors) != len(parsed["batches"]):
        errors.append(f"file control batch count {fc['batch_count']} != {len(parsed['batches'])}")
    if _int(fc["block_count"], "file block count", errors) != len(lines) // 10:
        errors.append(f"file control block count {fc['block_count']} != {len(lines) // 10}")
    if _int(fc["entadd_count"], "file entry/addenda count", errors) != file_count:
        errors.append(f"file control entry/addenda count {fc['entadd_count']} != {file_count}")
    if _int(fc["entry_hash"], "file entry hash", errors) != file_hash % 10**10:
        errors.append(f"file control entry hash {fc['entry_hash']} != {file_hash % 10**10}")
    if _int(fc["credit_amount"], "file credit total", errors) != file_credit:
        errors.append(f"file control credit total {fc['credit_amount']} != {file_credit}")
    references = [e.reference for e in entries]
    if len(set(references)) != len(references):
        errors.append("a payment reference appears twice in the file")
    return entries, errors


# --- pain.001.001.09 ---------------------------------------------------------------------------

PAIN_NS = "urn:iso:std:iso:20022:tech:xsd:pain.001.001.09"


@lru_cache(maxsize=1)
def pain001_schema():
    import sepaxml
    from lxml import etree

    path = os.path.join(os.path.dirname(sepaxml.__file__), "schemas", "pain.001.001.09.xsd")
    return etree.XMLSchema(etree.parse(path))


def _iban_ok(iban: str) -> bool:
    s = iban.replace(" ", "").upper()
    if not re.fullmatch(r"[A-Z]{2}[0-9]{2}[A-Z0-9]{1,30}", s):
        return False
    digits = "".join(str(int(ch, 36)) for ch in s[4:] + s[:4])
    return int(digits) % 97 == 1


def _minor(amount: str, where: str, errors: list[str]) -> int:
    try:
        value = Decimal(amount)
    except InvalidOperation:
        errors.append(f"{where}: amount {amount!r} is not a number")
        return 0
    if value != value.quantize(Decimal("0.01")):
        errors.append(f"{where}: EUR amounts have 2 decimals")
    return int(value * 100)


def read_pain001(content: bytes) -> tuple[list[FileEntry], list[str]]:
    from lxml import etree

    try:
        doc = etree.fromstring(content, parser=etree.XMLParser(resolve_entities=False, no_network=True))
    except etree.XMLSyntaxError as exc:
        return [], [f"not well-formed XML: {exc}"]
    schema = pain001_schema()
    if not schema.validate(doc):
        return [], [f"XSD: line {e.line}: {e.message}" for e in list(schema.error_log)[:20]]
    ns = {"p": PAIN_NS}
    errors: list[str] = []
    entries: list[FileEntry] = []
    txs = doc.findall(".//p:CdtTrfTxInf", ns)
    group_count = int(doc.findtext("p:CstmrCdtTrfInitn/p:GrpHdr/p:NbOfTxs", namespaces=ns))
    group_sum = doc.findtext("p:CstmrCdtTrfInitn/p:GrpHdr/p:CtrlSum", namespaces=ns)
    if group_count != len(txs):
        errors.append(f"GrpHdr/NbOfTxs {group_count} != {len(txs)} transactions")
    total = 0
    for i, pmt in enumerate(doc.findall(".//p:PmtInf", ns), start=1):
        ptx = pmt.findall("p:CdtTrfTxInf", ns)
        if pmt.findtext("p:NbOfTxs", namespaces=ns) not in (None, str(len(ptx))):
            errors.append(f"PmtInf {i}: NbOfTxs != {len(ptx)}")
        if pmt.findtext("p:PmtTpInf/p:SvcLvl/p:Cd", namespaces=ns) != "SEPA":
            errors.append(f"PmtInf {i}: service level must be SEPA")
        pmt_total = 0
        for j, tx in enumerate(ptx, start=1):
            where = f"PmtInf {i} tx {j}"
            amt = tx.find("p:Amt/p:InstdAmt", ns)
            if amt.get("Ccy") != "EUR":
                errors.append(f"{where}: SEPA carries EUR only, not {amt.get('Ccy')}")
            minor = _minor(amt.text, where, errors)
            pmt_total += minor
            iban = tx.findtext("p:CdtrAcct/p:Id/p:IBAN", namespaces=ns)
            if not iban or not _iban_ok(iban):
                errors.append(f"{where}: creditor IBAN fails its checksum")
            reference = tx.findtext("p:PmtId/p:EndToEndId", namespaces=ns)
            name = tx.findtext("p:Cdtr/p:Nm", namespaces=ns) or ""
            bic = tx.findtext("p:CdtrAgt/p:FinInstnId/p:BICFI", namespaces=ns)
            entries.append(FileEntry(reference=reference, amount_minor=minor, currency="EUR", name=name,
                                     beneficiary={"iban": iban, "bic": bic, "name": name}))
        ctrl = pmt.findtext("p:CtrlSum", namespaces=ns)
        if ctrl is not None and _minor(ctrl, f"PmtInf {i} CtrlSum", errors) != pmt_total:
            errors.append(f"PmtInf {i}: CtrlSum {ctrl} != sum of its transactions")
        total += pmt_total
    if group_sum is not None and _minor(group_sum, "GrpHdr CtrlSum", errors) != total:
        errors.append(f"GrpHdr/CtrlSum {group_sum} != sum of all transactions")
    refs = [e.reference for e in entries]
    if len(set(refs)) != len(refs):
        errors.append("an EndToEndId appears twice in the file")
    return entries, errors
