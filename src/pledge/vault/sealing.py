"""Sealing values: AES-256-GCM under the subject's data key (the `cryptography` package)."""

from __future__ import annotations

import os

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

NONCE_BYTES = 12


def seal(data_key: bytes, plaintext: str, aad: bytes) -> bytes:
    """`plaintext` encrypted and authenticated: a random nonce, then ciphertext and tag."""
    nonce = os.urandom(NONCE_BYTES)
    return nonce + AESGCM(data_key).encrypt(nonce, plaintext.encode("utf-8"), aad)


def unseal(data_key: bytes, sealed: bytes, aad: bytes) -> str:
    """The plaintext of `sealed`; raises `cryptography.exceptions.InvalidTag` if tampered."""
    return AESGCM(data_key).decrypt(sealed[:NONCE_BYTES], sealed[NONCE_BYTES:], aad).decode("utf-8")
