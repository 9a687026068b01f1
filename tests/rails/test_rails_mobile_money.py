"""Mobile money: the operator-shaped API takes amounts as decimal strings in major units, so the
connector converts payops's minor units with the currency's exponent (XOF 0, GHS/KES 2) and the
sandbox operator reads them back with its own table, refusing what does not fit the currency."""

from __future__ import annotations

import json
import uuid

import httpx
import pytest

from connectors.base import PermanentConnectorError, SubmitRequest
from connectors.rails import MobileMoneyConnector, momo_reference_id


@pytest.fixture
async def momo(bank):
    async with httpx.AsyncClient() as http:
        yield MobileMoneyConnector(name="momo_test", rail="mobile_money", base_url=bank.url,
                                   webhook_secret="x" * 32, http_client=http)


def transfer(amount_minor: int, currency: str, phone: str = "+221771234567") -> SubmitRequest:
    return SubmitRequest(reference=f"po_{uuid.uuid4().hex}", amount_minor=amount_minor, currency=currency,
                         rail="mobile_money", beneficiary={"type": "mobile_money", "name": "Awa", "phone": phone})


@pytest.mark.parametrize(("amount_minor", "currency", "phone", "on_the_wire"), [
    (1_500, "XOF", "+221771234567", "1500"),
    (1_250, "GHS", "+233241234567", "12.50"),
    (7, "KES", "+254712345678", "0.07"),
    (250_000, "XAF", "+237671234567", "250000"),
])
async def test_the_operator_gets_major_units_and_books_exactly_the_minor_amount(
    momo, bank, amount_minor, currency, phone, on_the_wire
):
    req = transfer(amount_minor, currency, phone)
    result = await momo.submit(req)
    assert result.status == "accepted"
    booked = bank.payment(req.reference)
    assert (booked["amount_minor"], booked["currency"], booked["accepted_count"]) == (amount_minor, currency, 1)
    async with httpx.AsyncClient() as http:
        status = (await http.get(f"{bank.url}/mobile-money/v1_0/transfer/{momo_reference_id(req.reference)}")).json()
    assert (status["amount"], status["currency"]) == (on_the_wire, currency)
    again = await momo.submit(req)  # a retry is the same transfer, not a second one
    assert again.payment_id == result.payment_id and bank.payment(req.reference)["accepted_count"] == 1


@pytest.mark.parametrize(("amount", "currency", "why"), [
    ("12.505", "GHS", "GHS has 2 decimals"),
    ("10.5", "XOF", "XOF has 0 decimals"),
    (1250, "GHS", "decimal string"),
    ("-5", "KES", "decimal string"),
    ("1e3", "KES", "decimal string"),
    ("0", "XOF", "greater than zero"),
    ("100", "EUR", "not supported"),
])
async def test_the_sandbox_operator_refuses_amounts_that_do_not_fit_the_currency(bank, amount, currency, why):
    body = {"amount": amount, "currency": currency, "externalId": f"po_{uuid.uuid4().hex}",
            "payee": {"partyIdType": "MSISDN", "partyId": "233241234567"}, "payerMessage": "t", "payeeNote": "t"}
    async with httpx.AsyncClient() as http:
        r = await http.post(f"{bank.url}/mobile-money/v1_0/transfer", content=json.dumps(body),
                            headers={"X-Reference-Id": str(uuid.uuid4()), "Content-Type": "application/json"})
    assert r.status_code == 400 and r.json()["error"] == "INVALID_AMOUNT" and why in r.json()["message"]
    assert bank.payment(body["externalId"]) is None


async def test_a_currency_payops_cannot_format_is_refused_before_the_operator(momo, bank):
    req = transfer(100, "ZZZ")
    with pytest.raises(PermanentConnectorError) as err:
        await momo.submit(req)
    assert err.value.code == "unsupported_currency" and bank.payment(req.reference) is None
