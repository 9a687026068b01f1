"""Temporal's own CLI against a real dev server, a real worker and payops's codec server (the API
over real HTTP, /codec): with the documented flags `--codec-endpoint` and `--codec-auth`,
`temporal workflow update execute --name retry` exits 0 and prints the decoded result, Queries
and history read in clear, and without an ops token nothing is decoded.

And `payops up` (what `make run` starts) end to end: its Temporal UI is configured with the codec
endpoint, so in a real Chromium (Debian `chromium`, PAYOPS_CHROMIUM_PATH; tests/browser.py) a payout's page shows its
decoded input and the `state` Query's decoded result with no setup; and `payops ledger check`
with no PAYOPS_* variable, in the same folder, checks that stack's ledger."""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from pathlib import Path

import httpx
import pytest
from schwifty import IBAN

from devstack.embedded import temporal_cli_path
from core.platform.names import payout_workflow_id
from tests.browser import HAVE_CHROMIUM, SHOTS, launch

pytestmark = pytest.mark.slow

OPS = "ops_admin"
# the sandbox bank answers 503 forever to an account ending in 0036: the payout reaches dlq
ALWAYS_503 = {"name": "Ada Lovelace", "bic": "COBADEFFXXX",
              "iban": str(IBAN.generate("DE", bank_code="37040044", account_code="0532010036"))}


@pytest.fixture
def settings(settings):
    return settings.model_copy(update={
        "payout_retry_initial_seconds": 0.1, "payout_retry_max_interval_seconds": 0.2,
        "payout_retry_max_attempts": 2, "payout_settlement_poll_seconds": 0.5,
    })  # fmt: skip


@pytest.fixture
async def served(settings, temporal_client, worker):
    from api.app import create_app
    from sandbox.serving import serve_in_background

    app = create_app(settings, temporal_client=temporal_client)
    async with serve_in_background(app, graceful_shutdown_seconds=1.0) as running:
        yield running.url


async def temporal_cli(settings, *args: str, timeout: float = 60.0) -> tuple[int, str, str]:
    """The real `temporal` CLI, run without blocking the loop that serves the codec endpoint."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TEMPORAL_")}
    proc = await asyncio.create_subprocess_exec(
        str(temporal_cli_path()), *args, "--address", settings.temporal_address,
        "--namespace", settings.temporal_namespace,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), timeout)
    return proc.returncode, out.decode(), err.decode()


async def payout_in_dlq(http: httpx.AsyncClient, token_for) -> str:
    merchant = f"mer_{uuid.uuid4().hex[:12]}"
    r = await http.post("/api/v1/merchants", headers=token_for(OPS),
                        json={"id": merchant, "name": "Acme", "default_currency": "EUR", "country": "FR"})
    assert r.status_code == 201, r.text
    r = await http.post(f"/api/v1/merchants/{merchant}/funding", json={"amount": "1000.00", "currency": "EUR"},
                        headers={**token_for(OPS), "Idempotency-Key": uuid.uuid4().hex})
    assert r.status_code == 201, r.text
    as_merchant = token_for("merchant_admin", merchant_id=merchant)
    r = await http.post("/api/v1/payouts", headers={**as_merchant, "Idempotency-Key": uuid.uuid4().hex},
                        json={"amount": "10.00", "currency": "EUR", "method": "sepa", "beneficiary": ALWAYS_503,
                              "priority": "instant"})
    assert r.status_code == 201, r.text
    pid = r.json()["id"]
    deadline = asyncio.get_running_loop().time() + 30
    while (status := (await http.get(f"/api/v1/payouts/{pid}", headers=as_merchant)).json()["status"]) != "dlq":
        assert asyncio.get_running_loop().time() < deadline, f"payout stayed {status}"
        await asyncio.sleep(0.1)
    return pid


async def test_update_query_and_history_through_the_codec_server(served, settings, token_for):
    codec = ["--codec-endpoint", f"{served}/codec", "--codec-auth", token_for("risk_ops")["Authorization"]]
    async with httpx.AsyncClient(base_url=served, timeout=15.0) as http:
        pid = await payout_in_dlq(http, token_for)
        wid = payout_workflow_id(pid)

        # the documented command: exits 0 and prints the decoded OpsDecision
        code, out, err = await temporal_cli(
            settings, "workflow", "update", "execute", "--workflow-id", wid, "--name", "retry",
            "--input", json.dumps({"actor": "ops-cli", "reason": "bank says fixed"}), *codec, "--output", "json",
        )  # fmt: skip
        assert code == 0, out + err
        result = json.loads(out)
        decision = result.get("result", result)
        assert decision["accepted"] is True and decision["status"], out

        code, out, err = await temporal_cli(
            settings, "workflow", "query", "--workflow-id", wid, "--name", "state", *codec, "--output", "json")
        assert code == 0, out + err
        state = json.loads(out)
        state = state.get("queryResult", state)
        state = state[0] if isinstance(state, list) else state
        assert state["payout_id"] == pid, out

        # the workflow's metadata (what the UI's "Send a signal" and Queries tab list) decodes too
        code, out, err = await temporal_cli(settings, "workflow", "metadata", "--workflow-id", wid, *codec)
        assert code == 0, out + err
        for name in ("retry", "cancel", "retry_signal", "cancel_signal", "state"):
            assert name in out, out

        # the history reads in clear through the codec, and holds no account number
        code, out, err = await temporal_cli(settings, "workflow", "show", "--workflow-id", wid, *codec, "--output", "json")
        assert code == 0, out + err
        assert pid in out and "binary/encrypted" not in out
        assert ALWAYS_503["iban"] not in out and ALWAYS_503["iban"][-10:] not in out

        # a merchant token, or none: the CLI cannot decode the result (the update itself still runs)
        for auth in (["--codec-auth", token_for("merchant_admin", merchant_id="mer_x")["Authorization"]], []):
            code, out, err = await temporal_cli(
                settings, "workflow", "query", "--workflow-id", wid, "--name", "state",
                "--codec-endpoint", f"{served}/codec", *auth, "--output", "json",
            )  # fmt: skip
            assert code != 0 and pid not in out, out + err


# --- `payops up` (what `make run` starts): the UI decodes with no setup, the CLI finds the stack ---



@pytest.fixture
def stack_dir():
    """Outside pytest's basetemp: PostgreSQL must traverse it (see tests/devstack/test_stack.py)."""
    import shutil
    import tempfile

    path = Path(tempfile.mkdtemp(prefix="payops-codec-test-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


async def test_the_documented_grant_flow_through_the_temporal_cli(served, settings, token_for):
    """docs/operations.md §7.1 as an operator runs it: a grant from the API, pasted into
    `temporal workflow update execute` with the codec flags; the audit trail names the grant's
    subject, verified, not the typed actor. Without a grant: performed, recorded unverified."""
    codec = ["--codec-endpoint", f"{served}/codec", "--codec-auth", token_for("risk_ops")["Authorization"]]
    async with httpx.AsyncClient(base_url=served, timeout=15.0) as http:
        pid = await payout_in_dlq(http, token_for)
        wid = payout_workflow_id(pid)
        r = await http.post("/api/v1/ops/grants", json={"scope": "payout", "id": pid, "decision": "retry"},
                            headers=token_for("treasury_ops", sub="tara@example.com"))
        assert r.status_code == 201, r.text
        grant = r.json()["grant"]
        code, out, err = await temporal_cli(
            settings, "workflow", "update", "execute", "--workflow-id", wid, "--name", "retry",
            "--input", json.dumps({"actor": "typed-name", "reason": "bank says fixed", "grant": grant}),
            *codec, "--output", "json",
        )  # fmt: skip
        assert code == 0, out + err

        async def events(n: int):
            got = (await http.get(f"/api/v1/payouts/{pid}/events", headers=token_for(OPS))).json()
            rows = got.get("data", got) if isinstance(got, dict) else got
            retries = [e for e in rows if (e.get("data") or {}).get("event_key", "").startswith("ops-retry:")]
            return retries if len(retries) >= n else None

        deadline = asyncio.get_running_loop().time() + 30
        while not (retries := await events(1)):
            assert asyncio.get_running_loop().time() < deadline, "no ops-retry event"
            await asyncio.sleep(0.1)
        assert retries[0]["actor"] == "tara@example.com", retries[0]
        assert retries[0]["data"]["verified"] is True and retries[0]["data"]["claimed_actor"] == "typed-name"

        # back in dlq, a retry sent with a typed name only: performed, audited as claimed/unverified
        while (await http.get(f"/api/v1/payouts/{pid}", headers=token_for(OPS))).json()["status"] != "dlq":
            assert asyncio.get_running_loop().time() < deadline + 30, "the payout did not return to dlq"
            await asyncio.sleep(0.1)
        code, out, err = await temporal_cli(
            settings, "workflow", "signal", "--workflow-id", wid, "--name", "retry_signal",
            "--input", json.dumps({"actor": "typed-name", "reason": "again"}), *codec)
        assert code == 0, out + err
        while not (retries := await events(2)):
            assert asyncio.get_running_loop().time() < deadline + 60, "no second ops-retry event"
            await asyncio.sleep(0.1)
        assert retries[1]["actor"] == "typed-name (claimed; unverified, via Temporal)"
        assert retries[1]["data"]["verified"] is False and retries[1]["data"]["via"] == "temporal"


async def test_payops_up_ui_decodes_and_commands_find_the_stack(stack_dir: Path):
    import signal
    import subprocess
    import sys

    from core.platform.auth_tokens import mint_dev_token
    from devstack.embedded import free_port
    from core.platform.settings import Settings
    from tests.devstack.test_stack import _stack_env, payops_up

    env = {**_stack_env(stack_dir / ".payops", free_port(), free_port(), free_port()),
           "PAYOPS_DEMO_ENABLED": "false",
           "PAYOPS_SANDBOX_BANK_SETTLE_DELAY_SECONDS": "0.2"}
    with payops_up(env, stack_dir, "codec") as stack:
        ui = f"http://127.0.0.1:{stack.ui_port}"
        ops = {"Authorization": f"Bearer {mint_dev_token(Settings(_env_file=None), role='ops_admin', sub='e2e')}"}
        async with httpx.AsyncClient(base_url=stack.api_url, timeout=20.0) as http:
            # 1. the UI was started with payops's codec endpoint
            settings_doc = (await http.get(f"{ui}/api/v1/settings")).json()
            endpoint = settings_doc["Codec"]["Endpoint"]
            assert endpoint.startswith(f"{stack.api_url}/codec/t/"), settings_doc["Codec"]

            # 2. a payout through the API; its history decodes through that endpoint, from the UI's origin
            pid = await _settled_payout(http, ops)
            wid = payout_workflow_id(pid)

            # 3. `payops ledger check` with no PAYOPS_* variable, in the folder of `payops up`
            bare = {k: v for k, v in os.environ.items() if not k.startswith("PAYOPS_")}
            check = subprocess.run([sys.executable, "-c", "from cli.main import app; app()", "ledger", "check"],
                                   cwd=stack_dir, env=bare, capture_output=True, text=True, timeout=120)
            assert check.returncode == 0 and "ledger OK" in check.stdout, check.stdout + check.stderr

        # 4. the Temporal UI in a browser: decoded input, and the `state` Query's result
        if HAVE_CHROMIUM:
            await _see_decoded_in_the_ui(ui, wid, pid)

        stack.proc.send_signal(signal.SIGINT)
        assert stack.proc.wait(90) == 0, stack.text()


async def _settled_payout(http: httpx.AsyncClient, ops: dict) -> str:
    merchant = f"mer_{uuid.uuid4().hex[:12]}"
    r = await http.post("/api/v1/merchants", headers=ops,
                        json={"id": merchant, "name": "Acme", "default_currency": "EUR", "country": "FR"})
    assert r.status_code == 201, r.text
    r = await http.post(f"/api/v1/merchants/{merchant}/funding", json={"amount": "1000.00", "currency": "EUR"},
                        headers={**ops, "Idempotency-Key": uuid.uuid4().hex})
    assert r.status_code == 201, r.text
    beneficiary = {"name": "Ada Lovelace", "iban": "DE89 3704 0044 0532 0130 00", "bic": "COBADEFFXXX"}
    r = await http.post("/api/v1/payouts", headers={**ops, "Idempotency-Key": uuid.uuid4().hex},
                        json={"merchant_id": merchant, "amount": "12.34", "currency": "EUR", "method": "sepa",
                              "beneficiary": beneficiary, "priority": "instant"})
    assert r.status_code == 201, r.text
    pid = r.json()["id"]
    deadline = asyncio.get_running_loop().time() + 60
    while (status := (await http.get(f"/api/v1/payouts/{pid}", headers=ops)).json()["status"]) not in ("settled", "submitted"):
        assert asyncio.get_running_loop().time() < deadline, f"payout stayed {status}"
        await asyncio.sleep(0.2)
    return pid


async def _see_decoded_in_the_ui(ui: str, wid: str, pid: str) -> None:
    from playwright.async_api import async_playwright

    SHOTS.mkdir(parents=True, exist_ok=True)
    async with async_playwright() as pw:
        browser = await launch(pw)
        try:
            page = await browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(30_000)
            await page.goto(f"{ui}/namespaces/default/workflows/{wid}")
            # the input decoded: its field names and values, not binary/encrypted ciphertext
            await page.get_by_text('"amount_minor"').first.wait_for()
            await page.get_by_text("1234").first.wait_for()
            await page.screenshot(path=str(SHOTS / "temporal-ui-payout-input.png"), full_page=True)

            # the Queries tab knows the workflow's queries; `state` runs and its result is decoded
            await page.get_by_text("Queries", exact=True).first.click()
            await page.get_by_role("button", name="Run Query").click()
            await page.get_by_text('"step"').first.wait_for()
            await page.get_by_text('"hold_status"').first.wait_for()
            await page.screenshot(path=str(SHOTS / "temporal-ui-payout-state-query.png"), full_page=True)
            assert pid in await page.content()

            # "Send a signal" offers the workflow's signals (from its decoded metadata)
            await page.get_by_role("button", name="More Actions").click()
            await page.wait_for_timeout(500)
            await page.screenshot(path=str(SHOTS / "temporal-ui-payout-more-actions.png"), full_page=True)
            await page.locator("text=Send a Signal").locator("visible=true").first.click()
            await page.wait_for_timeout(1500)
            await page.screenshot(path=str(SHOTS / "temporal-ui-payout-send-signal.png"), full_page=True)
        finally:
            await browser.close()
