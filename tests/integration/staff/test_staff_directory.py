"""Staff accounts on a real database: login with a password and a TOTP code, lockout,
replayed codes, disabled accounts, idle sessions, and what the database and audit log keep."""

from __future__ import annotations

import datetime as dt

import pyotp
import pytest
from sqlalchemy import select, update

from pledge.audit import AuditEntry
from pledge.runtime import Runtime
from pledge.staff import AccountRefused, Enrolment, Role, StaffDirectory
from pledge.staff.rules import MAX_FAILURES
from pledge.staff.tables import StaffMember, StaffSession

PASSWORD = "purple elephants dance"


@pytest.fixture
def directory(runtime: Runtime) -> StaffDirectory:
    return StaffDirectory(sessions=runtime.sessions, keyring=runtime.keyring, issuer="Pledge test")


@pytest.fixture
def sam(directory: StaffDirectory) -> Enrolment:
    return directory.add("sam", Role.PRIVACY_OFFICER, PASSWORD, actor="tests")


def code(enrolment: Enrolment, offset: int = 0) -> str:
    totp = pyotp.TOTP(enrolment.totp_secret)
    return totp.generate_otp(totp.timecode(dt.datetime.now(dt.UTC)) + offset)


def test_the_right_password_and_code_open_a_session_of_that_role(
    directory: StaffDirectory, sam: Enrolment
) -> None:
    token = directory.log_in("sam", PASSWORD, code(sam))
    assert token is not None
    member = directory.who(token)
    assert member is not None
    assert (member.username, member.role) == ("sam", Role.PRIVACY_OFFICER)
    directory.log_out(token)
    assert directory.who(token) is None


def test_a_wrong_password_a_wrong_code_or_an_unknown_name_all_fail_alike(
    directory: StaffDirectory, sam: Enrolment
) -> None:
    assert directory.log_in("sam", "wrong password entirely", code(sam)) is None
    assert (
        directory.log_in("sam", PASSWORD, "000000" if code(sam) != "000000" else "111111") is None
    )
    assert directory.log_in("nobody", PASSWORD, code(sam)) is None
    assert directory.log_in("sam", PASSWORD, "") is None


def test_a_code_is_good_once(directory: StaffDirectory, sam: Enrolment) -> None:
    used = code(sam)
    assert directory.log_in("sam", PASSWORD, used) is not None
    assert directory.log_in("sam", PASSWORD, used) is None
    # The next step's code (an authenticator a little ahead) still works.
    assert directory.log_in("sam", PASSWORD, code(sam, +1)) is not None


def test_five_failures_lock_the_account_even_against_the_right_credentials(
    runtime: Runtime, directory: StaffDirectory, sam: Enrolment
) -> None:
    for _ in range(MAX_FAILURES):
        assert directory.log_in("sam", "not the password!", code(sam)) is None
    assert directory.log_in("sam", PASSWORD, code(sam)) is None
    (member,) = directory.members()
    assert member.locked_until is not None
    # Fifteen minutes later it opens again.
    with runtime.sessions() as session, session.begin():
        session.execute(
            update(StaffMember).values(
                last_failure_at=dt.datetime.now(dt.UTC) - dt.timedelta(minutes=16)
            )
        )
    assert directory.log_in("sam", PASSWORD, code(sam)) is not None
    (member,) = directory.members()
    assert member.locked_until is None


def test_a_disabled_account_cannot_log_in_and_its_sessions_end_at_once(
    directory: StaffDirectory, sam: Enrolment
) -> None:
    token = directory.log_in("sam", PASSWORD, code(sam))
    directory.disable("sam", actor="staff:admin")
    assert directory.who(token) is None
    assert directory.log_in("sam", PASSWORD, code(sam, +1)) is None


def test_a_session_ends_after_thirty_idle_minutes_and_after_eight_hours(
    runtime: Runtime, directory: StaffDirectory, sam: Enrolment
) -> None:
    idle = directory.log_in("sam", PASSWORD, code(sam))
    old = directory.log_in("sam", PASSWORD, code(sam, +1))
    assert idle is not None
    assert old is not None
    now = dt.datetime.now(dt.UTC)
    with runtime.sessions() as session, session.begin():
        rows = session.scalars(select(StaffSession).order_by(StaffSession.created_at)).all()
        rows[0].last_seen_at = now - dt.timedelta(minutes=31)
        rows[1].expires_at = now - dt.timedelta(seconds=1)
    assert directory.who(idle) is None
    assert directory.who(old) is None
    assert directory.forget_expired() == 2


def test_a_role_change_applies_to_the_open_session(
    directory: StaffDirectory, sam: Enrolment
) -> None:
    token = directory.log_in("sam", PASSWORD, code(sam))
    directory.set_role("sam", Role.AUDITOR, actor="staff:admin")
    member = directory.who(token)
    assert member is not None
    assert member.role is Role.AUDITOR


def test_a_reset_gives_a_new_password_and_secret_and_ends_sessions(
    directory: StaffDirectory, sam: Enrolment
) -> None:
    token = directory.log_in("sam", PASSWORD, code(sam))
    renewed = directory.reset("sam", "a brand new passphrase", actor="staff:admin")
    assert renewed.totp_secret != sam.totp_secret
    assert directory.who(token) is None
    assert directory.log_in("sam", PASSWORD, code(renewed)) is None
    assert directory.log_in("sam", "a brand new passphrase", code(renewed)) is not None


def test_a_taken_username_or_a_weak_password_is_refused(
    directory: StaffDirectory, sam: Enrolment
) -> None:
    with pytest.raises(AccountRefused, match="taken"):
        directory.add("sam", Role.AUDITOR, "another good password", actor="tests")
    with pytest.raises(AccountRefused, match="12 to 256"):
        directory.add("kim", Role.AUDITOR, "short", actor="tests")
    assert [m.username for m in directory.members()] == ["sam"]


def test_the_database_keeps_an_argon2id_hash_and_a_sealed_secret_only(
    runtime: Runtime, directory: StaffDirectory, sam: Enrolment
) -> None:
    token = directory.log_in("sam", PASSWORD, code(sam))
    assert token is not None
    with runtime.sessions() as session:
        row = session.scalars(select(StaffMember)).one()
        stored = session.scalars(select(StaffSession)).one()
        audit = session.scalars(select(AuditEntry).where(AuditEntry.action.like("staff.%"))).all()
    assert row.password_hash.startswith("$argon2id$")
    assert PASSWORD not in row.password_hash
    assert sam.totp_secret.encode() not in row.totp_sealed
    assert token not in stored.token_sha256
    logged = " ".join(entry.details + entry.actor for entry in audit)
    assert {entry.action for entry in audit} == {"staff.created", "staff.logged_in"}
    assert PASSWORD not in logged
    assert sam.totp_secret not in logged


def test_tries_during_a_lockout_do_not_prolong_it(
    runtime: Runtime, directory: StaffDirectory, sam: Enrolment
) -> None:
    for _ in range(MAX_FAILURES):
        directory.log_in("sam", "not the password!", code(sam))
    (locked,) = directory.members()
    for _ in range(10):  # an attacker keeps trying while the account is locked
        assert directory.log_in("sam", "not the password!", code(sam)) is None
    (still,) = directory.members()
    assert still.locked_until == locked.locked_until
