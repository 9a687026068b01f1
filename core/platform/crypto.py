"""Encryption at rest for sensitive fields (beneficiary account details), AES-256-GCM with
the same key ring as the Temporal payload codec (PAYOPS_CODEC_KEYS)."""

from __future__ import annotations

import json
import os

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from core.platform.codec import parse_keys


class FieldCipher:
    def __init__(self, keys_spec: str) -> None:
        keys = parse_keys(keys_spec)
        self._active_id = keys[0][0]
        self._ciphers = {kid: AESGCM(key) for kid, key in keys}

    def encrypt_json(self, value: dict) -> bytes:
        nonce = os.urandom(12)
        kid = self._active_id.encode()
        ct = self._ciphers[self._active_id].encrypt(nonce, json.dumps(value, sort_keys=True).encode(), kid)
        return bytes([len(kid)]) + kid + nonce + ct

    def decrypt_json(self, blob: bytes) -> dict:
        n = blob[0]
        kid = blob[1 : 1 + n]
        nonce, ct = blob[1 + n : 13 + n], blob[13 + n :]
        cipher = self._ciphers.get(kid.decode())
        if cipher is None:
            raise ValueError(f"field encrypted with unknown key id {kid.decode()!r}")
        return json.loads(cipher.decrypt(nonce, ct, kid))
