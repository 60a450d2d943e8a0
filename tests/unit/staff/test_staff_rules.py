"""Pure rules of staff access: the role matrix, TOTP codes, lockouts and account names."""

from __future__ import annotations

import datetime as dt

import pyotp
import pytest

from pledge.staff.rules import (
    LOCKOUT,
    MAX_FAILURES,
    ROLE_PERMISSIONS,
    AccountRefused,
    Permission,
    Role,
    allows,
    check_password,
    check_username,
    form_token,
    form_token_ok,
    locked_until,
    new_totp_secret,
    totp_step,
    totp_uri,
)

NOW = dt.datetime(2026, 12, 3, 10, 0, 15, tzinfo=dt.UTC)


def test_every_role_has_a_row_and_every_row_can_see_the_queue() -> None:
    assert set(ROLE_PERMISSIONS) == set(Role)
    assert all(allows(role, Permission.VIEW_QUEUE) for role in Role)


def test_only_an_admin_manages_staff() -> None:
    assert [r for r in Role if allows(r, Permission.MANAGE_STAFF)] == [Role.ADMIN]


def test_an_auditor_never_sees_a_persons_data_nor_changes_anything() -> None:
    for permission in (
        Permission.VIEW_REQUESTER,
        Permission.ENTER_REQUEST,
        Permission.VERIFY_REQUEST,
        Permission.DECIDE_REQUEST,
        Permission.MANAGE_STAFF,
    ):
        assert not allows(Role.AUDITOR, permission)
    assert allows(Role.AUDITOR, Permission.READ_AUDIT)


def test_a_support_agent_works_requests_but_decides_none() -> None:
    assert allows(Role.SUPPORT_AGENT, Permission.VERIFY_REQUEST)
    assert not allows(Role.SUPPORT_AGENT, Permission.DECIDE_REQUEST)
    assert not allows(Role.SUPPORT_AGENT, Permission.READ_AUDIT)


def test_a_code_of_the_current_step_or_one_either_side_is_accepted_once() -> None:
    secret = new_totp_secret()
    totp = pyotp.TOTP(secret)
    step = totp.timecode(NOW)
    for offset in (-1, 0, 1):
        assert totp_step(secret, totp.generate_otp(step + offset), NOW, None) == step + offset
    for offset in (-2, 2):
        assert totp_step(secret, totp.generate_otp(step + offset), NOW, None) is None
    # Replay: a code of a step already used (or an earlier one) is refused.
    code = totp.generate_otp(step)
    assert totp_step(secret, code, NOW, last_step=step) is None
    assert totp_step(secret, code, NOW, last_step=step - 1) == step


@pytest.mark.parametrize("code", ["", "12345", "1234567", "abcdef", " 123456"])
def test_anything_but_six_digits_is_refused(code: str) -> None:
    assert totp_step(new_totp_secret(), code, NOW, None) is None


def test_the_provisioning_uri_names_the_issuer_and_account() -> None:
    secret = new_totp_secret()
    uri = totp_uri(secret, "sam", "Pledge (privacy.example.com)")
    assert uri.startswith("otpauth://totp/")
    assert "sam" in uri
    assert f"secret={secret}" in uri
    assert "issuer=Pledge" in uri


def test_an_account_locks_at_the_fifth_failure_for_fifteen_minutes() -> None:
    assert locked_until(MAX_FAILURES - 1, NOW) is None
    assert locked_until(MAX_FAILURES, NOW) == NOW + LOCKOUT
    assert locked_until(MAX_FAILURES, None) is None


@pytest.mark.parametrize("username", ["a", "Sam", "1sam", "sam smith", "x" * 41, "sam/../x"])
def test_bad_usernames_are_refused(username: str) -> None:
    with pytest.raises(AccountRefused):
        check_username(username)


def test_good_usernames_pass() -> None:
    for username in ("sam", "sam.smith", "s-m_9"):
        assert check_username(username) == username


@pytest.mark.parametrize(
    "password", ["short", "x" * 11, "x" * 257, "my name is sam, hello", "SAM-is-the-best-1"]
)
def test_bad_passwords_are_refused(password: str) -> None:
    with pytest.raises(AccountRefused):
        check_password(password, "sam")


def test_a_forms_token_belongs_to_its_session() -> None:
    secret = b"s" * 32
    token = form_token(secret, "session-a")
    assert form_token_ok(secret, "session-a", token)
    assert not form_token_ok(secret, "session-b", token)
    assert not form_token_ok(secret, "session-a", None)
    assert not form_token_ok(b"t" * 32, "session-a", token)
