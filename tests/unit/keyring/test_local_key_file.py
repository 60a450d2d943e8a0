"""The local key file: private to its owner, rotatable, and the same for every reader."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from cryptography.exceptions import InvalidTag

from pledge.keyring.providers import KEY_BYTES, KeyUnavailable, LocalKeyFile

AAD = b"pledge:data-key:subject-1"


@pytest.fixture
def key_path(tmp_path: Path) -> Path:
    return tmp_path / "master.key"


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_key_file_is_created_readable_by_its_owner_only(key_path: Path) -> None:
    assert not key_path.exists()

    LocalKeyFile(key_path)

    assert mode_of(key_path) == 0o600


def test_the_key_file_is_created_private_whatever_the_umask(key_path: Path) -> None:
    previous = os.umask(0)
    try:
        LocalKeyFile(key_path)
    finally:
        os.umask(previous)

    assert mode_of(key_path) == 0o600


def test_a_wrapped_data_key_unwraps_to_the_same_key(key_path: Path) -> None:
    keys = LocalKeyFile(key_path)
    data_key = os.urandom(KEY_BYTES)

    _, wrapped = keys.wrap(data_key, AAD)

    assert data_key not in wrapped
    assert keys.unwrap(keys.active_key_id, wrapped, AAD) == data_key


def test_a_data_key_wrapped_for_one_subject_does_not_unwrap_for_another(key_path: Path) -> None:
    keys = LocalKeyFile(key_path)
    _, wrapped = keys.wrap(os.urandom(KEY_BYTES), AAD)

    with pytest.raises(InvalidTag):
        keys.unwrap(keys.active_key_id, wrapped, b"pledge:data-key:subject-2")


def test_a_key_file_readable_by_others_is_refused(key_path: Path) -> None:
    LocalKeyFile(key_path)
    key_path.chmod(0o644)

    with pytest.raises(PermissionError, match="mode 644"):
        LocalKeyFile(key_path)


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o660, 0o601])
def test_a_key_file_open_to_the_group_or_others_in_any_way_is_refused(
    key_path: Path, mode: int
) -> None:
    LocalKeyFile(key_path)
    key_path.chmod(mode)

    with pytest.raises(PermissionError, match="it must be 0600"):
        LocalKeyFile(key_path)


def test_a_file_that_is_not_a_key_file_is_refused(key_path: Path) -> None:
    key_path.write_text('{"format": "something else"}')
    key_path.chmod(0o600)

    with pytest.raises(ValueError, match="not a Pledge key file"):
        LocalKeyFile(key_path)


def test_rotating_makes_a_new_active_key_and_old_data_keys_still_unwrap(key_path: Path) -> None:
    keys = LocalKeyFile(key_path)
    old_id = keys.active_key_id
    data_key = os.urandom(KEY_BYTES)
    _, wrapped_under_old = keys.wrap(data_key, AAD)

    new_id = keys.rotate()

    assert new_id != old_id
    assert keys.active_key_id == new_id
    assert sorted(keys.held_key_ids()) == sorted([old_id, new_id])
    assert keys.unwrap(old_id, wrapped_under_old, AAD) == data_key
    _, wrapped_under_new = keys.wrap(data_key, AAD)
    assert keys.unwrap(new_id, wrapped_under_new, AAD) == data_key
    with pytest.raises(InvalidTag):
        keys.unwrap(old_id, wrapped_under_new, AAD)


def test_a_rotation_is_kept_in_the_file_and_the_file_stays_private(key_path: Path) -> None:
    keys = LocalKeyFile(key_path)
    old_id = keys.active_key_id
    new_id = keys.rotate()

    reread = LocalKeyFile(key_path)

    assert reread.active_key_id == new_id
    assert sorted(reread.held_key_ids()) == sorted([old_id, new_id])
    assert mode_of(key_path) == 0o600


def test_retiring_an_old_key_makes_its_data_keys_unavailable(key_path: Path) -> None:
    keys = LocalKeyFile(key_path)
    old_id = keys.active_key_id
    _, wrapped_under_old = keys.wrap(os.urandom(KEY_BYTES), AAD)
    new_id = keys.rotate()

    keys.retire(old_id)

    assert keys.held_key_ids() == [new_id]
    with pytest.raises(KeyUnavailable, match=old_id):
        keys.unwrap(old_id, wrapped_under_old, AAD)
    with pytest.raises(KeyUnavailable):
        LocalKeyFile(key_path).unwrap(old_id, wrapped_under_old, AAD)


def test_the_active_key_cannot_be_retired(key_path: Path) -> None:
    keys = LocalKeyFile(key_path)
    data_key = os.urandom(KEY_BYTES)
    _, wrapped = keys.wrap(data_key, AAD)

    with pytest.raises(ValueError, match="active master key cannot be retired"):
        keys.retire(keys.active_key_id)

    assert keys.unwrap(keys.active_key_id, wrapped, AAD) == data_key


def test_unwrapping_under_a_key_the_file_never_held_is_unavailable(key_path: Path) -> None:
    keys = LocalKeyFile(key_path)

    with pytest.raises(KeyUnavailable, match="local:0000000000000000"):
        keys.unwrap("local:0000000000000000", keys.wrap(os.urandom(KEY_BYTES), AAD)[1], AAD)


def test_the_blind_index_is_the_same_for_the_same_value_and_file(key_path: Path) -> None:
    keys = LocalKeyFile(key_path)

    first = keys.blind_index(b"email:jane@example.com")

    assert keys.blind_index(b"email:jane@example.com") == first
    assert len(first) == 32
    assert keys.blind_index(b"email:john@example.com") != first


def test_the_blind_index_differs_between_two_key_files(tmp_path: Path) -> None:
    one = LocalKeyFile(tmp_path / "one.key")
    other = LocalKeyFile(tmp_path / "other.key")

    assert one.blind_index(b"email:jane@example.com") != other.blind_index(
        b"email:jane@example.com"
    )


def test_the_blind_index_survives_a_rotation(key_path: Path) -> None:
    keys = LocalKeyFile(key_path)
    before = keys.blind_index(b"email:jane@example.com")

    keys.rotate()

    assert keys.blind_index(b"email:jane@example.com") == before


def test_a_second_reader_of_the_same_file_loads_it_rather_than_making_a_new_one(
    key_path: Path,
) -> None:
    first = LocalKeyFile(key_path)
    content = key_path.read_bytes()
    data_key = os.urandom(KEY_BYTES)
    _, wrapped = first.wrap(data_key, AAD)

    second = LocalKeyFile(key_path)

    assert key_path.read_bytes() == content
    assert second.active_key_id == first.active_key_id
    assert second.held_key_ids() == first.held_key_ids()
    assert second.unwrap(first.active_key_id, wrapped, AAD) == data_key
    assert second.blind_index(b"email:jane@example.com") == first.blind_index(
        b"email:jane@example.com"
    )


def test_a_key_rotated_in_by_one_reader_is_not_lost_when_another_reader_rotates(
    key_path: Path,
) -> None:
    web, worker = LocalKeyFile(key_path), LocalKeyFile(key_path)
    web_key = web.rotate()
    data_key = os.urandom(KEY_BYTES)
    _, wrapped_by_web = web.wrap(data_key, AAD)

    worker.rotate()

    assert web_key in LocalKeyFile(key_path).held_key_ids()
    assert LocalKeyFile(key_path).unwrap(web_key, wrapped_by_web, AAD) == data_key


def test_wrapping_reports_the_generation_it_used_even_after_another_process_rotated(
    tmp_path: Path,
) -> None:
    path = tmp_path / "shared.key"
    web, admin = LocalKeyFile(path), LocalKeyFile(path)
    rotated_to = admin.rotate()  # another process, same file
    key_id, wrapped = web.wrap(b"d" * KEY_BYTES, AAD)
    assert key_id == rotated_to
    assert admin.unwrap(key_id, wrapped, AAD) == b"d" * KEY_BYTES
