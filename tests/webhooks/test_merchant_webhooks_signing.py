"""The verification snippet merchants copy from docs/webhooks.md, run as written, against what
payops actually sends: valid, forged, stale, tampered and rotated-secret signatures."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from core.webhooks.signing import SignatureError, new_secret, sign, verify

DOC = Path(__file__).resolve().parent.parent.parent / "docs" / "webhooks.md"
BODY = b'{"id":"evt_1","type":"payout.settled","payout_version":5,"data":{"id":"po_1"}}'


@pytest.fixture(scope="module")
def snippet_verify():
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)
    [code] = [b for b in blocks if "def verify_payops_signature" in b]
    namespace: dict = {}
    exec(compile(code, str(DOC), "exec"), namespace)
    return namespace["verify_payops_signature"]


def test_a_genuine_signature_verifies(snippet_verify):
    secret = new_secret()
    assert snippet_verify(secret, sign([secret], BODY, int(time.time())), BODY)
    assert verify(secret, sign([secret], BODY, int(time.time())), BODY)


def test_a_forged_signature_fails(snippet_verify):
    secret, attacker = new_secret(), new_secret()
    now = int(time.time())
    assert not snippet_verify(secret, sign([attacker], BODY, now), BODY)
    assert not snippet_verify(secret, f"t={now},v1={'0' * 64}", BODY)
    with pytest.raises(SignatureError) as exc:
        verify(secret, sign([attacker], BODY, now), BODY)
    assert exc.value.code == "signature_mismatch"


def test_a_tampered_body_or_timestamp_fails(snippet_verify):
    secret = new_secret()
    now = int(time.time())
    header = sign([secret], BODY, now)
    assert not snippet_verify(secret, header, BODY.replace(b"po_1", b"po_2"))
    assert not snippet_verify(secret, header.replace(f"t={now}", f"t={now + 1}"), BODY)


def test_a_stale_signature_fails_even_when_genuine(snippet_verify):
    secret = new_secret()
    old = int(time.time()) - 301
    assert not snippet_verify(secret, sign([secret], BODY, old), BODY)
    with pytest.raises(SignatureError) as exc:
        verify(secret, sign([secret], BODY, old), BODY)
    assert exc.value.code == "signature_stale"


@pytest.mark.parametrize("header", ["", "garbage", "t=abc,v1=00", "v1=00", "t=123", "t=,v1="])
def test_malformed_headers_fail(snippet_verify, header):
    assert not snippet_verify(new_secret(), header, BODY)


def test_during_a_rotation_either_secret_verifies(snippet_verify):
    old, new = new_secret(), new_secret()
    header = sign([new, old], BODY, int(time.time()))
    assert header.count("v1=") == 2
    assert snippet_verify(old, header, BODY) and snippet_verify(new, header, BODY)
    assert not snippet_verify(new_secret(), header, BODY)
