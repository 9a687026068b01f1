"""An encrypting PayloadCodec: workflow inputs, results, signals and queries reach the Temporal
server (and its UI, and its history) as AES-256-GCM ciphertext. Beneficiary account numbers are
therefore never stored in Temporal in clear.

Keys come from settings (`PAYOPS_CODEC_KEYS`, "key_id:base64"): the first encrypts, all decrypt,
so a key can be rotated without breaking running workflows.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Iterable, Sequence

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from temporalio.api.common.v1 import Payload
from temporalio.converter import PayloadCodec

ENCODING = b"binary/encrypted"


def parse_keys(spec: str) -> list[tuple[str, bytes]]:
    keys: list[tuple[str, bytes]] = []
    for item in (part.strip() for part in spec.split(",")):
        if not item:
            continue
        key_id, sep, b64 = item.partition(":")
        if not sep:
            raise ValueError("codec key must look like 'key_id:urlsafe-base64-of-32-bytes'")
        raw = base64.urlsafe_b64decode(b64 + "=" * (-len(b64) % 4))
        if len(raw) != 32:
            raise ValueError(f"codec key {key_id!r} must be 32 bytes (AES-256), got {len(raw)}")
        keys.append((key_id, raw))
    if not keys:
        raise ValueError("no codec keys configured")
    return keys


class EncryptionCodec(PayloadCodec):
    def __init__(self, keys: Iterable[tuple[str, bytes]]) -> None:
        keys = list(keys)
        self._encrypt_id, encrypt_key = keys[0]
        self._encryptor = AESGCM(encrypt_key)
        self._ciphers = {key_id: AESGCM(key) for key_id, key in keys}

    @classmethod
    def from_spec(cls, spec: str) -> "EncryptionCodec":
        return cls(parse_keys(spec))

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        out = []
        for p in payloads:
            nonce = os.urandom(12)
            aad = self._encrypt_id.encode()
            data = nonce + self._encryptor.encrypt(nonce, p.SerializeToString(), aad)
            out.append(
                Payload(
                    metadata={"encoding": ENCODING, "encryption-key-id": self._encrypt_id.encode()},
                    data=data,
                )
            )
        return out

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        out = []
        for p in payloads:
            if p.metadata.get("encoding", b"") != ENCODING:
                out.append(p)
                continue
            key_id = p.metadata.get("encryption-key-id", b"").decode()
            cipher = self._ciphers.get(key_id)
            if cipher is None:
                raise ValueError(f"payload encrypted with unknown key id {key_id!r}")
            nonce, ciphertext = p.data[:12], p.data[12:]
            out.append(Payload.FromString(cipher.decrypt(nonce, ciphertext, key_id.encode())))
        return out
