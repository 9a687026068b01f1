"""Bulk payouts against real PostgreSQL, Redis, Temporal and the sandbox bank: idempotency of a
retried batch and of a reference in two batches, the per-item report, both modes, CSV, the
approval gate, a merchant running out of funds half-way, a worker killed during intake, and the
ledger check afterwards."""

from __future__ import annotations

import asyncio
import csv
import io
import signal
import uuid

import pytest
from sqlalchemy import func, select

from core.ledger import service as ledger
from core.payouts import bulk
from core.platform.tables import (bulk_payout_items, bulk_payouts, payout_events, payout_rollups_daily,
                                  payout_rollups_hourly, payouts)

OPS = "ops_admin"
BASE = "/api/v1/bulk-payouts"
IBANS = ["DE89370400440532013000", "FR1420041010050500013M02606", "NL91ABNA0417164300"]
BICS = ["COBADEFFXXX", "PSSTFRPPXXX", "ABNANL2AXXX"]


def item(ref: str, amount: str = "10.00", n: int = 0, **extra) -> dict:
    # instant: SEPA Instant settles on its own; standard SEPA would wait for the batch file's cutoff
    return {"reference": ref, "amount": amount, "currency": "EUR", "method": "sepa", "priority": "instant",
            "beneficiary": {"name": f"Employee {n}", "iban": IBANS[n % 3], "bic": BICS[n % 3]}, **extra}


def key() -> dict:
    return {"Idempotency-Key": uuid.uuid4().hex}


@pytest.fixture
def settings(settings):
    return settings.model_copy(update={
        "payout_settlement_poll_seconds": 0.5, "payout_return_window_hours": 0.0002,
        "payout_retry_initial_seconds": 0.2, "payout_retry_max_interval_seconds": 0.5,
        "bulk_payout_approval_threshold_minor": 1_000_000,  # 10,000.00 EUR
        "bulk_payout_intake_chunk_size": 7,
    })


@pytest.fixture
async def merchant(client, token_for) -> str:
    mid = f"mer_{uuid.uuid4().hex[:12]}"
    r = await client.post("/api/v1/merchants", json={"id": mid, "name": "Payroll Co", "default_currency": "EUR",
                                                      "country": "FR"}, headers=token_for(OPS))
    assert r.status_code == 201, r.text
    return mid


@pytest.fixture
def as_merchant(token_for, merchant) -> dict:
    return token_for("merchant_admin", merchant_id=merchant, sub=f"user-of-{merchant}")


async def fund(client, token_for, merchant: str, amount: str) -> None:
    r = await client.post(f"/api/v1/merchants/{merchant}/funding", json={"amount": amount, "currency": "EUR"},
                          headers={**token_for(OPS), **key()})
    assert r.status_code == 201, r.text


async def payout_count(sessionmaker, merchant: str) -> int:
    async with sessionmaker() as s:
        return await s.scalar(select(func.count()).select_from(payouts).where(payouts.c.merchant_id == merchant))


async def poll(check, timeout: float, what: str):
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        result = await check()
        if result:
            return result
        assert loop.time() < deadline, f"timed out after {timeout}s waiting for {what}"
        await asyncio.sleep(0.2)


async def wait_batch(client, headers, batch_id: str, status: str, timeout: float = 90) -> dict:
    last: list[dict] = [{}]

    async def done():
        last[0] = body = (await client.get(f"{BASE}/{batch_id}", headers=headers)).json()
        return body if body["status"] == status else None
    try:
        return await poll(done, timeout, f"bulk payout {batch_id} to be {status}")
    except AssertionError as exc:
        raise AssertionError(f"{exc}; last seen: {last[0]}") from None


async def ledger_ok(sessionmaker) -> None:
    async with sessionmaker() as session:
        report = await ledger.check_ledger(session)
    assert report.ok, report.violations


class TestIntake:
    """No worker: the payouts exist and wait for their workflows."""

    async def test_partial_report_and_retried_batch_returns_the_same_batch(
        self, client, as_merchant, merchant, sessionmaker
    ):
        items = [item("pay-1"), item("pay-2", n=1),
                 {**item("pay-3"), "beneficiary": {"name": "X", "iban": "DE00 0000", "bic": "COBADEFFXXX"}},
                 {k: v for k, v in item("ignored").items() if k != "reference"},
                 item("pay-5", amount="1.001"), item("pay-1", n=2)]
        headers = {**as_merchant, **key()}
        r = await client.post(BASE, json={"mode": "partial", "items": items}, headers=headers)
        assert r.status_code == 201, r.text
        batch = r.json()
        lines = {i["line"]: i for i in batch["items"]}
        assert [lines[n]["status"] for n in range(1, 7)] == ["accepted", "accepted", "rejected", "rejected",
                                                             "rejected", "rejected"]
        assert lines[3]["error"]["field"] == "beneficiary.sepa.iban" and "IBAN" in lines[3]["error"]["reason"]
        assert lines[4]["error"]["field"] == "reference"
        assert lines[5]["error"]["field"] == "amount"
        assert lines[6]["error"]["code"] == "duplicate_reference" and "line 1" in lines[6]["error"]["reason"]
        assert (batch["accepted_count"], batch["rejected_count"], batch["item_count"]) == (2, 4, 6)
        assert batch["payouts_by_status"] == {"pending": 2} and batch["status"] == "processing"
        assert batch["totals"] == [{"currency": "EUR", "amount": "20.00", "amount_minor": 2000}]

        # a retried upload: the same batch, the same report, no second payout
        again = await client.post(BASE, json={"mode": "partial", "items": items}, headers=headers)
        assert again.status_code == 200, again.text
        assert again.json()["id"] == batch["id"] and again.json()["items"] == batch["items"]
        assert await payout_count(sessionmaker, merchant) == 2
        # the same key with another body is refused
        other = await client.post(BASE, json={"mode": "partial", "items": items[:1]}, headers=headers)
        assert other.status_code == 422 and other.json()["type"].endswith("idempotency_key_reused"), other.text

        # ordinary payouts: listed by GET /payouts with an audit trail naming the batch
        listed = (await client.get("/api/v1/payouts", headers=as_merchant)).json()["data"]
        assert {p["id"] for p in listed} == {lines[1]["payout_id"], lines[2]["payout_id"]}
        trail = (await client.get(f"/api/v1/payouts/{lines[1]['payout_id']}/events", headers=as_merchant)).json()
        assert trail[0]["to_status"] == "pending" and batch["id"] in trail[0]["reason"]

    async def test_all_or_nothing_creates_nothing_then_a_corrected_retry_goes_through(
        self, client, as_merchant, merchant, sessionmaker
    ):
        headers = {**as_merchant, **key()}
        bad = [item("aon-1"), item("aon-2", currency="XXX")]
        r = await client.post(BASE, json={"mode": "all_or_nothing", "items": bad}, headers=headers)
        assert r.status_code == 422, r.text
        body = r.json()
        assert body["rejected_count"] == 1
        assert [i["status"] for i in body["items"]] == ["valid", "rejected"]
        assert body["items"][1]["error"]["field"] == "currency"
        assert await payout_count(sessionmaker, merchant) == 0
        async with sessionmaker() as s:
            assert await s.scalar(select(func.count()).select_from(bulk_payouts)) == 0
        good = [item("aon-1"), item("aon-2", n=1)]
        r = await client.post(BASE, json={"mode": "all_or_nothing", "items": good}, headers=headers)
        assert r.status_code == 201, r.text
        assert r.json()["accepted_count"] == 2 and await payout_count(sessionmaker, merchant) == 2

    async def test_a_reference_used_in_another_batch_or_a_single_payout_is_never_paid_twice(
        self, client, as_merchant, merchant, sessionmaker
    ):
        first = (await client.post(BASE, json={"mode": "partial", "items": [item("ref-a")]},
                                   headers={**as_merchant, **key()})).json()
        single = await client.post("/api/v1/payouts", json={k: v for k, v in item("x").items() if k != "reference"},
                                   headers={**as_merchant, "Idempotency-Key": "ref-single"})
        assert single.status_code == 201, single.text
        second = await client.post(
            BASE, json={"mode": "partial", "items": [item("ref-a"), item("ref-single"), item("ref-b")]},
            headers={**as_merchant, **key()})
        assert second.status_code == 201, second.text
        report = second.json()["items"]
        assert report[0]["error"] == {"code": "duplicate_reference", "field": "reference",
                                      "reason": f"the reference already made payout {first['items'][0]['payout_id']}",
                                      "existing_payout_id": first["items"][0]["payout_id"]}
        assert report[1]["error"]["existing_payout_id"] == single.json()["id"]
        assert report[2]["status"] == "accepted"
        # all_or_nothing refuses the whole batch for a taken reference
        r = await client.post(BASE, json={"mode": "all_or_nothing", "items": [item("ref-b"), item("ref-c")]},
                              headers={**as_merchant, **key()})
        assert r.status_code == 422 and r.json()["items"][0]["error"]["code"] == "duplicate_reference"
        # a single payout whose Idempotency-Key is a batch item's reference is refused
        r = await client.post("/api/v1/payouts", json={k: v for k, v in item("x").items() if k != "reference"},
                              headers={**as_merchant, "Idempotency-Key": "ref-b"})
        assert r.status_code == 422, r.text
        assert await payout_count(sessionmaker, merchant) == 3  # ref-a, ref-single, ref-b

    async def test_a_batch_item_taking_the_key_while_a_single_payout_is_created_is_422_not_500(
        self, client, as_merchant, merchant, sessionmaker, monkeypatch
    ):
        """The race found by an adversarial run (8 in 40 answered 500): the single payout claims its
        Idempotency-Key (no payout has it yet), a batch's item with that reference is inserted and
        committed, then the single payout's insert meets the payouts' unique key."""
        from core.payouts import service
        from core.platform import idempotency

        claim_key = idempotency.claim_key

        async def claim_then_a_batch_takes_the_key(session, **kwargs):
            claim = await claim_key(session, **kwargs)
            if kwargs["key"] == "raced-ref":
                r = await client.post(BASE, json={"mode": "partial", "items": [item("raced-ref")]},
                                      headers={**as_merchant, **key()})
                assert r.json()["items"][0]["status"] == "accepted", r.text
            return claim

        monkeypatch.setattr(service.idempotency, "claim_key", claim_then_a_batch_takes_the_key)
        r = await client.post("/api/v1/payouts", json={k: v for k, v in item("x").items() if k != "reference"},
                              headers={**as_merchant, "Idempotency-Key": "raced-ref"})
        assert r.status_code == 422 and r.json()["type"].endswith("idempotency_key_reused"), r.text
        assert await payout_count(sessionmaker, merchant) == 1  # the batch's
        # the key's claim went with the refused request: a replay is refused the same way, not 500
        monkeypatch.setattr(service.idempotency, "claim_key", claim_key)
        r = await client.post("/api/v1/payouts", json={k: v for k, v in item("x").items() if k != "reference"},
                              headers={**as_merchant, "Idempotency-Key": "raced-ref"})
        assert r.status_code == 422, r.text

    async def test_csv_upload_and_tenant_scoping(self, client, as_merchant, merchant, token_for, sessionmaker):
        csv_text = (
            "reference,amount,currency,method,beneficiary_name,beneficiary_iban,beneficiary_bic,metadata.employee\n"
            f"csv-1,12.50,EUR,sepa,Jane Doe,{IBANS[0]},{BICS[0]},E-1\n"
            f"csv-2,7.25,EUR,sepa,John Roe,{IBANS[1]},{BICS[1]},E-2\n"
            "csv-3,abc,EUR,sepa,Bad Amount,DE89370400440532013000,COBADEFFXXX,\n"
        )
        r = await client.post(f"{BASE}/csv?mode=partial", content=csv_text.encode(),
                              headers={**as_merchant, **key(), "content-type": "text/csv"})
        assert r.status_code == 201, r.text
        batch = r.json()
        assert batch["source"] == "csv" and [i["status"] for i in batch["items"]] == ["accepted", "accepted", "rejected"]
        assert batch["items"][2]["error"]["field"] == "amount"
        p = (await client.get(f"/api/v1/payouts/{batch['items'][0]['payout_id']}", headers=as_merchant)).json()
        assert p["amount_minor"] == 1250 and p["metadata"] == {"employee": "E-1"}
        bad = await client.post(f"{BASE}/csv?mode=partial", content=b"reference,amout\nx,1\n",
                                headers={**as_merchant, **key(), "content-type": "text/csv"})
        assert bad.status_code == 422 and "amout" in bad.json()["detail"]

        # another merchant sees neither the batch nor it in its list; ops see it
        other = token_for("merchant_admin", merchant_id="mer_someone_else", sub="intruder")
        assert (await client.get(f"{BASE}/{batch['id']}", headers=other)).status_code == 404
        assert (await client.get(f"{BASE}/{batch['id']}/items", headers=other)).status_code == 404
        assert (await client.get(BASE, headers=other)).json()["data"] == []
        assert (await client.get(BASE, headers=as_merchant)).json()["data"][0]["id"] == batch["id"]
        assert (await client.get(f"{BASE}/{batch['id']}", headers=token_for(OPS))).status_code == 200
        page = (await client.get(f"{BASE}/{batch['id']}/items?status=rejected", headers=as_merchant)).json()
        assert [i["line"] for i in page["data"]] == [3]

    async def test_csv_as_a_multipart_upload_the_way_curl_dash_f_sends_it(
        self, client, as_merchant, merchant, sessionmaker
    ):
        csv_text = ("reference,amount,currency,method,priority,beneficiary_name,beneficiary_iban,beneficiary_bic\n"
                    f"form-1,12.50,EUR,sepa,instant,Jane Doe,{IBANS[0]},{BICS[0]}\n"
                    f"form-2,3.00,EUR,sepa,instant,John Roe,{IBANS[1]},{BICS[1]}\n")

        def curl_form(boundary: str) -> tuple[bytes, dict]:
            # the bytes of `curl -F file=@payroll.csv` (curl picks a fresh boundary every time)
            body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"payroll.csv\"\r\n"
                    f"Content-Type: text/csv\r\n\r\n{csv_text}\r\n--{boundary}--\r\n").encode()
            return body, {"content-type": f"multipart/form-data; boundary={boundary}"}

        headers = {**as_merchant, **key()}
        body, ctype = curl_form("------------------------d74496d66958873e")
        r = await client.post(f"{BASE}/csv?mode=all_or_nothing", content=body, headers={**headers, **ctype})
        assert r.status_code == 201, r.text
        batch = r.json()
        assert batch["source"] == "csv" and [i["reference"] for i in batch["items"]] == ["form-1", "form-2"]
        assert batch["totals"] == [{"currency": "EUR", "amount": "15.50", "amount_minor": 1550}]
        # the same file uploaded again (another boundary) is the same batch, not two payrolls
        body, ctype = curl_form("------------------------0b5f1e2c9a7d4e11")
        again = await client.post(f"{BASE}/csv?mode=all_or_nothing", content=body, headers={**headers, **ctype})
        assert again.status_code == 200 and again.json()["id"] == batch["id"], again.text
        # and what httpx's files= sends (a browser's file input alike)
        r = await client.post(f"{BASE}/csv?mode=partial", headers={**as_merchant, **key()},
                              files={"file": ("p.csv", csv_text.replace("form-", "form-b").encode(), "text/csv")})
        assert r.status_code == 201 and r.json()["accepted_count"] == 2, r.text
        assert await payout_count(sessionmaker, merchant) == 4

    async def test_a_spreadsheets_csv_export_bom_crlf_quoted_commas(self, client, as_merchant, merchant):
        rows = [
            ["reference", "amount", "currency", "method", "description", "beneficiary_name", "beneficiary_iban",
             "beneficiary_bic", "metadata.department"],
            ["xl-1", "1250.00", "EUR", "sepa", 'Salary, December "13th month"', "Doe, Jane", IBANS[0], BICS[0],
             "Sales, EMEA"],
            ["xl-2", "7.25", "EUR", "sepa", "Expenses\r\nline two", "Roe, John", IBANS[1], BICS[1], ""],
        ]
        buf = io.StringIO()
        csv.writer(buf, quoting=csv.QUOTE_MINIMAL, lineterminator="\r\n").writerows(rows)
        exported = "\ufeff".encode() + buf.getvalue().encode()  # what "CSV UTF-8" saves: BOM first
        assert exported.startswith(b"\xef\xbb\xbf") and b'"Doe, Jane"' in exported and b"\r\n" in exported
        r = await client.post(f"{BASE}/csv?mode=all_or_nothing", headers={**as_merchant, **key()},
                              files={"file": ("payroll.csv", exported, "application/vnd.ms-excel")})
        assert r.status_code == 201, r.text
        first, second = r.json()["items"]
        assert (first["reference"], second["reference"]) == ("xl-1", "xl-2")
        p1 = (await client.get(f"/api/v1/payouts/{first['payout_id']}", headers=as_merchant)).json()
        assert p1["amount_minor"] == 125000 and p1["description"] == 'Salary, December "13th month"'
        assert p1["metadata"] == {"department": "Sales, EMEA"} and p1["beneficiary"]["name"] == "Doe, Jane"
        p2 = (await client.get(f"/api/v1/payouts/{second['payout_id']}", headers=as_merchant)).json()
        assert p2["description"] == "Expenses\r\nline two" and p2["metadata"] == {}

        # a spreadsheet in a decimal-comma locale separates cells with ';'
        semi = "\ufeffreference;amount;currency;method;beneficiary_name;beneficiary_iban;beneficiary_bic\r\n" \
               f'xl-3;9.99;EUR;sepa;"Doe; Jane";{IBANS[2]};{BICS[2]}\r\n'
        r = await client.post(f"{BASE}/csv?mode=all_or_nothing", headers={**as_merchant, **key()},
                              files={"file": ("payroll.csv", semi.encode(), "text/csv")})
        assert r.status_code == 201, r.text
        p3 = (await client.get(f"/api/v1/payouts/{r.json()['items'][0]['payout_id']}", headers=as_merchant)).json()
        assert p3["amount_minor"] == 999 and p3["beneficiary"]["name"] == "Doe; Jane"

    async def test_a_multipart_upload_without_a_file_part_is_a_422_naming_the_parts(
        self, client, as_merchant, merchant, sessionmaker
    ):
        csv_text = f"reference,amount,currency,method,beneficiary_name,beneficiary_iban,beneficiary_bic\n" \
                   f"np-1,1.00,EUR,sepa,Jane,{IBANS[0]},{BICS[0]}\n"
        headers = {**as_merchant, **key()}
        r = await client.post(f"{BASE}/csv?mode=partial", headers=headers,
                              files={"upload": ("payroll.csv", csv_text.encode(), "text/csv")})
        assert r.status_code == 422, r.text
        problem = r.json()
        assert problem["errors"][0]["loc"] == ["body", "file"] and "upload" in problem["detail"]
        assert await payout_count(sessionmaker, merchant) == 0
        # the key was not spent: the corrected upload goes through with it
        r = await client.post(f"{BASE}/csv?mode=partial", headers=headers,
                              files={"file": ("payroll.csv", csv_text.encode(), "text/csv")})
        assert r.status_code == 201 and r.json()["accepted_count"] == 1, r.text

    async def test_the_dashboard_rollups_count_a_batchs_payouts_like_single_ones(
        self, client, as_merchant, merchant, sessionmaker
    ):
        # a batch's payouts are counted by one grouped statement, a single payout by its row trigger
        items = [item(f"roll-{n}", amount=f"{n + 1}.50", n=n) for n in range(25)] + [item("roll-bad", amount="x")]
        r = await client.post(BASE, json={"mode": "partial", "items": items}, headers={**as_merchant, **key()})
        assert r.status_code == 201 and r.json()["accepted_count"] == 25, r.text
        single = {k: v for k, v in item("x", amount="100.00").items() if k != "reference"}
        r = await client.post("/api/v1/payouts", json=single, headers={**as_merchant, "Idempotency-Key": "roll-s"})
        assert r.status_code == 201, r.text
        p = payouts.c
        async with sessionmaker() as s:
            truth = (await s.execute(
                select(func.count(), func.sum(p.amount_minor), func.sum(p.fee_minor))
                .where(p.merchant_id == merchant, p.status == "pending"))).one()
            for table in (payout_rollups_hourly, payout_rollups_daily):
                counted = (await s.execute(
                    select(func.sum(table.c.payout_count), func.sum(table.c.amount_minor), func.sum(table.c.fee_minor))
                    .where(table.c.merchant_id == merchant, table.c.status == "pending"))).one()
                assert tuple(counted) == tuple(truth), table.name
        assert truth[0] == 26 and truth[1] == sum(n * 100 + 150 for n in range(25)) + 10000

    async def test_an_approved_all_or_nothing_batch_whose_reference_was_taken_creates_no_payout(
        self, client, as_merchant, merchant, sessionmaker, settings
    ):
        items = [item("aon-1", amount="11000.00"), item("aon-2", amount="10.00", n=1)]
        r = await client.post(BASE, json={"mode": "all_or_nothing", "items": items}, headers={**as_merchant, **key()})
        assert r.status_code == 201 and r.json()["status"] == "awaiting_approval", r.text
        # meanwhile a single payout takes one of its references
        single = {k: v for k, v in item("x").items() if k != "reference"}
        r2 = await client.post("/api/v1/payouts", json=single, headers={**as_merchant, "Idempotency-Key": "aon-2"})
        assert r2.status_code == 201, r2.text
        # the approval's execution (APPROVE_BULK_PAYOUT) fails the batch and commits that
        outcome = await bulk.release_approved(sessionmaker, None, settings, r.json()["id"], actor="approver")
        assert "all_or_nothing created nothing" in outcome["failed"]
        assert await payout_count(sessionmaker, merchant) == 1  # the single payout, not aon-1
        async with sessionmaker() as s:
            assert await s.scalar(select(bulk_payouts.c.status).where(bulk_payouts.c.id == r.json()["id"])) == "failed"


class TestProcessing:
    async def test_funds_run_out_half_way_the_rest_proceeds_and_the_ledger_checks(
        self, client, worker, as_merchant, merchant, token_for, sessionmaker
    ):
        # 10 payouts of 100.00 (plus fees) against 500.00: some cannot be held
        await fund(client, token_for, merchant, "500.00")
        items = [item(f"run-{n}", amount="100.00", n=n) for n in range(10)]
        r = await client.post(BASE, json={"mode": "partial", "items": items}, headers={**as_merchant, **key()})
        assert r.status_code == 201, r.text
        batch = await wait_batch(client, as_merchant, r.json()["id"], "completed")
        by_status = batch["payouts_by_status"]
        assert set(by_status) == {"settled", "rejected"}, by_status
        assert 1 <= by_status["rejected"] and 1 <= by_status["settled"] <= 5
        assert by_status["settled"] + by_status["rejected"] == 10
        assert batch["progress"] == {"terminal": 10, "total": 10, "fraction": 1.0}
        assert batch["intake"]["started"] == 10 and batch["intake"]["completed_at"]
        async with sessionmaker() as s:
            codes = set(await s.scalars(select(payouts.c.failure_code).where(
                payouts.c.merchant_id == merchant, payouts.c.status == "rejected")))
        assert codes == {"insufficient_funds"}
        await ledger_ok(sessionmaker)

    async def test_above_the_threshold_nothing_exists_until_the_ops_action_is_approved(
        self, client, worker, as_merchant, merchant, token_for, sessionmaker
    ):
        await fund(client, token_for, merchant, "20000.00")
        items = [item("big-1", amount="6000.00"), item("big-2", amount="5000.00", n=1)]
        r = await client.post(BASE, json={"mode": "partial", "items": items}, headers={**as_merchant, **key()})
        assert r.status_code == 201, r.text
        batch = r.json()
        assert batch["status"] == "awaiting_approval" and batch["approval"]["required"]
        action_id = batch["approval"]["action_id"]
        assert action_id and all(i["status"] == "accepted" for i in batch["items"])
        assert await payout_count(sessionmaker, merchant) == 0
        # its references are reserved meanwhile
        dup = await client.post(BASE, json={"mode": "partial", "items": [item("big-1")]},
                                headers={**as_merchant, **key()})
        assert dup.json()["items"][0]["error"]["code"] == "duplicate_reference"
        # the merchant cannot approve; two ops approvers (medium risk) release it
        assert (await client.post(f"/api/v1/ops/actions/{action_id}/approve", headers=as_merchant)).status_code == 403
        await asyncio.sleep(0.5)
        assert await payout_count(sessionmaker, merchant) == 0
        for name in ("alice", "bob"):
            v = await client.post(f"/api/v1/ops/actions/{action_id}/approve", json={"comment": "payroll ok"},
                                  headers=token_for("approver", sub=name))
            assert v.status_code == 200, v.text
        done = await wait_batch(client, as_merchant, batch["id"], "completed")
        assert done["payouts_by_status"] == {"settled": 2}
        assert done["approval"]["action_status"] == "executed"
        await ledger_ok(sessionmaker)

    async def test_a_rejected_approval_creates_nothing_and_frees_the_references(
        self, client, worker, as_merchant, merchant, token_for, sessionmaker
    ):
        items = [item("rej-1", amount="11000.00")]
        batch = (await client.post(BASE, json={"mode": "partial", "items": items},
                                   headers={**as_merchant, **key()})).json()
        action_id = batch["approval"]["action_id"]
        v = await client.post(f"/api/v1/ops/actions/{action_id}/reject", json={"comment": "not this month"},
                              headers=token_for("approver", sub="carol"))
        assert v.status_code == 200, v.text
        done = await wait_batch(client, as_merchant, batch["id"], "approval_rejected", timeout=30)
        assert done["payouts_by_status"] == {} and await payout_count(sessionmaker, merchant) == 0
        again = await client.post(BASE, json={"mode": "partial", "items": [item("rej-1", amount="10.00")]},
                                  headers={**as_merchant, **key()})
        assert again.json()["items"][0]["status"] == "accepted", again.text


@pytest.fixture
def bank_config():
    from sandbox.bank import BankConfig

    return BankConfig(webhook_url=None, settle_delay=0.3, hang_seconds=3.0)


N_KILL = 120


async def test_worker_killed_during_intake_every_item_ends_up_exactly_once(
    client, settings, sessionmaker, temporal_client, bank, as_merchant, merchant, token_for, tmp_path, monkeypatch
):
    from tests.payouts.test_payout_crash import spawn_worker

    # the subprocess worker starts one payout at a time, 7 per activity: the intake takes seconds
    monkeypatch.setenv("PAYOPS_BULK_PAYOUT_INTAKE_CONCURRENCY", "1")
    for name, value in (("PAYOPS_PAYOUT_SETTLEMENT_POLL_SECONDS", "0.5"),
                        ("PAYOPS_PAYOUT_RETURN_WINDOW_HOURS", "0.0002")):
        monkeypatch.setenv(name, value)
    await fund(client, token_for, merchant, "100000.00")
    items = [item(f"kill-{n}", amount="1.00", n=n) for n in range(N_KILL)]
    r = await client.post(BASE, json={"mode": "partial", "items": items}, headers={**as_merchant, **key()})
    assert r.status_code == 201, r.text
    batch_id = r.json()["id"]

    async def started() -> int:
        async with sessionmaker() as s:
            return await s.scalar(select(func.count()).select_from(bulk_payout_items).where(
                bulk_payout_items.c.bulk_payout_id == batch_id, bulk_payout_items.c.started_at.is_not(None)))

    workers = [spawn_worker(settings, tmp_path, 0)]
    try:
        await poll(lambda: _at_least(started, 7), 120, "the first chunk to start")
        at_kill = await started()
        workers[0]._signal(signal.SIGKILL, group=True)
        workers[0].wait(10)
        assert not workers[0].alive
        assert at_kill < N_KILL, "the intake finished before the kill; the test proved nothing"
        workers.append(spawn_worker(settings, tmp_path, 1))
        await wait_batch(client, as_merchant, batch_id, "completed", timeout=300)
    finally:
        for w in workers:
            w.stop(5)

    async with sessionmaker() as s:
        rows = (await s.execute(select(payouts.c.id, payouts.c.idempotency_key, payouts.c.status).where(
            payouts.c.merchant_id == merchant))).all()
        created_events = await s.scalar(select(func.count()).select_from(payout_events).where(
            payout_events.c.payout_id.in_([r.id for r in rows]), payout_events.c.sequence == 1))
    assert sorted(r.idempotency_key for r in rows) == sorted(f"kill-{n}" for n in range(N_KILL))
    assert {r.status for r in rows} == {"settled"}
    assert created_events == N_KILL
    for r in rows:
        assert bank.payment(r.id)["accepted_count"] == 1, r.id
    # one workflow run per payout, however many times its start was attempted
    runs = [w async for w in temporal_client.list_workflows(
        f'WorkflowType = "PayoutWorkflow" AND MerchantId = "{merchant}"')]
    assert len(runs) == N_KILL and len({w.id for w in runs}) == N_KILL
    await ledger_ok(sessionmaker)


async def _at_least(count, n: int) -> bool:
    return await count() >= n



class TestIntakeHistory:
    @pytest.fixture
    def settings(self, settings):
        return settings.model_copy(update={"bulk_payout_intake_chunk_size": 1})

    async def test_the_intake_continues_as_new_and_its_histories_stay_bounded(
        self, client, worker, as_merchant, merchant, token_for, temporal_client
    ):
        from core.platform.names import bulk_payout_intake_workflow_id
        from workflows.bulk_payouts import CHUNKS_PER_RUN

        n = CHUNKS_PER_RUN + 5  # one payout per chunk: more chunks than one run may hold
        await fund(client, token_for, merchant, "1000.00")
        r = await client.post(BASE, json={"mode": "partial", "items": [item(f"h-{i}", "1.00", i) for i in range(n)]},
                              headers={**as_merchant, **key()})
        assert r.status_code == 201, r.text
        batch = await wait_batch(client, as_merchant, r.json()["id"], "completed", timeout=180)
        assert batch["intake"]["started"] == n
        wid = bulk_payout_intake_workflow_id(batch["id"])
        runs = [w async for w in temporal_client.list_workflows(f'WorkflowId = "{wid}"')]
        assert len(runs) == 2, [(w.run_id, w.status) for w in runs]
        for run in runs:
            history = await temporal_client.get_workflow_handle(wid, run_id=run.run_id).fetch_history()
            assert len(history.events) <= 6 * CHUNKS_PER_RUN + 10, len(history.events)
