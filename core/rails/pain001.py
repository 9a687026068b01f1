"""ISO 20022 pain.001.001.09 (customer credit transfer initiation) builder for SEPA batches.

One payment information block (SEPA, SLEV charges, requested execution date), one credit
transfer per payout with the payout id as EndToEndId (35 characters, exactly its length).
Group header control sum and number of transactions are returned as the control totals.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from xml.sax.saxutils import escape

NS = "urn:iso:std:iso:20022:tech:xsd:pain.001.001.09"


@dataclass(frozen=True)
class SepaEntry:
    payout_id: str
    iban: str
    bic: str | None
    name: str
    amount_minor: int
    remittance: str | None = None


@dataclass(frozen=True)
class SepaDebtor:
    name: str = "PAYOPS SAS"
    iban: str = "FR7630006000011234567890189"
    bic: str = "AGRIFRPPXXX"


def _amount(minor: int) -> str:
    return f"{minor // 100}.{minor % 100:02d}"


def _text(value: str, limit: int) -> str:
    return escape(value[:limit])


def build_pain001(entries: list[SepaEntry], *, message_id: str, created: datetime, execution_date: date,
                  debtor: SepaDebtor | None = None) -> tuple[bytes, dict]:
    if not entries:
        raise ValueError("a pain.001 file needs at least one transfer")
    d = debtor or SepaDebtor()
    total = sum(e.amount_minor for e in entries)
    control = {"number_of_transactions": len(entries), "control_sum": _amount(total), "total_credit_minor": total,
               "message_id": message_id}
    parts = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        f'<Document xmlns="{NS}"><CstmrCdtTrfInitn>',
        f"<GrpHdr><MsgId>{_text(message_id, 35)}</MsgId><CreDtTm>{created.strftime('%Y-%m-%dT%H:%M:%S')}</CreDtTm>"
        f"<NbOfTxs>{len(entries)}</NbOfTxs><CtrlSum>{_amount(total)}</CtrlSum>"
        f"<InitgPty><Nm>{_text(d.name, 70)}</Nm></InitgPty></GrpHdr>",
        f"<PmtInf><PmtInfId>{_text(message_id, 35)}</PmtInfId><PmtMtd>TRF</PmtMtd><BtchBookg>true</BtchBookg>"
        f"<NbOfTxs>{len(entries)}</NbOfTxs><CtrlSum>{_amount(total)}</CtrlSum>"
        "<PmtTpInf><SvcLvl><Cd>SEPA</Cd></SvcLvl></PmtTpInf>"
        f"<ReqdExctnDt><Dt>{execution_date.isoformat()}</Dt></ReqdExctnDt>"
        f"<Dbtr><Nm>{_text(d.name, 70)}</Nm></Dbtr><DbtrAcct><Id><IBAN>{d.iban}</IBAN></Id></DbtrAcct>"
        f"<DbtrAgt><FinInstnId><BICFI>{d.bic}</BICFI></FinInstnId></DbtrAgt><ChrgBr>SLEV</ChrgBr>",
    ]
    for e in entries:
        agent = f"<CdtrAgt><FinInstnId><BICFI>{e.bic}</BICFI></FinInstnId></CdtrAgt>" if e.bic else ""
        remittance = f"<RmtInf><Ustrd>{_text(e.remittance, 140)}</Ustrd></RmtInf>" if e.remittance else ""
        parts.append(
            f"<CdtTrfTxInf><PmtId><EndToEndId>{_text(e.payout_id, 35)}</EndToEndId></PmtId>"
            f"<Amt><InstdAmt Ccy=\"EUR\">{_amount(e.amount_minor)}</InstdAmt></Amt>{agent}"
            f"<Cdtr><Nm>{_text(e.name, 70)}</Nm></Cdtr><CdtrAcct><Id><IBAN>{e.iban}</IBAN></Id></CdtrAcct>"
            f"{remittance}</CdtTrfTxInf>"
        )
    parts.append("</PmtInf></CstmrCdtTrfInitn></Document>")
    return "".join(parts).encode("utf-8"), control
