"""Sealed values: readable only with the right data key and bound to where they belong."""

from __future__ import annotations

import os

import pytest
from cryptography.exceptions import InvalidTag

from pledge.vault.rules import value_aad
from pledge.vault.sealing import NONCE_BYTES, seal, unseal

AAD = value_aad("subject-1", "newsletter", "user.contact.email", "email", 1)


@pytest.fixture
def data_key() -> bytes:
    return os.urandom(32)


@pytest.mark.parametrize(
    "plaintext",
    [
        "jane@example.com",
        "",
        "Zoë Ångström-Müller, 東京都, Ελλάδα, 🙂",
        "'; DROP TABLE subjects; --",
        "<script>alert('x')</script>",
        "line one\nline two\x00after a NUL",
        "x" * 10_000,
    ],
)
def test_a_sealed_value_unseals_to_exactly_what_was_sealed(data_key: bytes, plaintext: str) -> None:
    assert unseal(data_key, seal(data_key, plaintext, AAD), AAD) == plaintext


def test_the_sealed_bytes_do_not_contain_the_plaintext(data_key: bytes) -> None:
    plaintext = "jane.doe@example.com lives at 123 Main Street"

    sealed = seal(data_key, plaintext, AAD)

    assert plaintext.encode() not in sealed
    assert b"jane.doe" not in sealed
    assert b"Main Street" not in sealed


def test_the_sealed_bytes_are_a_nonce_then_the_ciphertext_and_a_16_byte_tag(
    data_key: bytes,
) -> None:
    plaintext = "jane@example.com"

    sealed = seal(data_key, plaintext, AAD)

    assert len(sealed) == NONCE_BYTES + len(plaintext.encode()) + 16


@pytest.mark.parametrize("position", [0, NONCE_BYTES - 1, NONCE_BYTES, -1])
def test_a_single_flipped_byte_anywhere_is_detected(data_key: bytes, position: int) -> None:
    sealed = bytearray(seal(data_key, "jane@example.com", AAD))
    sealed[position] ^= 0x01

    with pytest.raises(InvalidTag):
        unseal(data_key, bytes(sealed), AAD)


def test_another_data_key_cannot_unseal_a_value(data_key: bytes) -> None:
    sealed = seal(data_key, "jane@example.com", AAD)

    with pytest.raises(InvalidTag):
        unseal(os.urandom(32), sealed, AAD)


@pytest.mark.parametrize(
    "other_aad",
    [
        value_aad("subject-2", "newsletter", "user.contact.email", "email", 1),
        value_aad("subject-1", "registration", "user.contact.email", "email", 1),
        value_aad("subject-1", "newsletter", "user.contact.phone_number", "email", 1),
        value_aad("subject-1", "newsletter", "user.contact.email", "backup_email", 1),
        value_aad("subject-1", "newsletter", "user.contact.email", "email", 2),
        b"",
    ],
)
def test_a_value_moved_to_another_subject_field_or_version_does_not_unseal(
    data_key: bytes, other_aad: bytes
) -> None:
    sealed = seal(data_key, "jane@example.com", AAD)

    with pytest.raises(InvalidTag):
        unseal(data_key, sealed, other_aad)


def test_sealing_the_same_value_twice_gives_different_bytes(data_key: bytes) -> None:
    first = seal(data_key, "jane@example.com", AAD)
    second = seal(data_key, "jane@example.com", AAD)

    assert first != second
    assert first[:NONCE_BYTES] != second[:NONCE_BYTES]
    assert unseal(data_key, first, AAD) == unseal(data_key, second, AAD) == "jane@example.com"
