"""Staff accounts and console sessions: enrolment, login with a password and a TOTP code,
lockout, roles, and the audit of each.

A login does the same work whatever is wrong with it (an unknown username, a wrong password,
a wrong code, a locked or disabled account): one argon2 verification, and the same answer,
so neither the answer nor its timing says which usernames exist."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from functools import cached_property

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session, sessionmaker

from pledge.audit import record
from pledge.keyring import Keyring
from pledge.staff.rules import (
    SESSION_IDLE,
    SESSION_MAX,
    AccountRefused,
    Permission,
    Role,
    allows,
    check_password,
    check_username,
    locked_until,
    new_session_token,
    new_totp_secret,
    session_digest,
    totp_step,
    totp_uri,
)
from pledge.staff.tables import StaffMember, StaffSession
from pledge.vault.sealing import seal, unseal

TOUCH_EVERY = dt.timedelta(seconds=60)
"""A session's last-seen time is written at most this often (its idle limit is 30 minutes)."""


class StaffNotFound(LookupError):
    """No staff member has this username."""


@dataclass(frozen=True)
class StaffView:
    """A staff member as the console shows them."""

    id: str
    username: str
    role: Role
    created_at: dt.datetime
    disabled: bool
    locked_until: dt.datetime | None

    @property
    def actor(self) -> str:
        """How the audit log names them."""
        return f"staff:{self.username}"

    def may(self, permission: Permission) -> bool:
        """Whether their role allows `permission`."""
        return allows(self.role, permission)


@dataclass(frozen=True)
class Enrolment:
    """A new (or reset) account's TOTP secret, shown once to set up an authenticator app."""

    member: StaffView
    totp_secret: str
    totp_uri: str


class StaffDirectory:
    """Who may use the admin console, in which role."""

    def __init__(self, *, sessions: sessionmaker[Session], keyring: Keyring, issuer: str) -> None:
        self.sessions = sessions
        self.keyring = keyring
        self.issuer = issuer
        self.hasher = PasswordHasher()

    # --- Accounts -----------------------------------------------------------------------------

    def add(self, username: str, role: Role, password: str, *, actor: str) -> Enrolment:
        """Create an account; raise `AccountRefused` for a bad username or password, or one
        already taken."""
        check_username(username)
        check_password(password, username)
        staff_id = str(uuid.uuid4())
        secret = new_totp_secret()
        with self.sessions() as session, session.begin():
            taken = session.scalar(select(StaffMember.id).where(StaffMember.username == username))
            if taken is not None:
                raise AccountRefused(f"the username '{username}' is taken")
            key = self.keyring.create_data_key(staff_id)
            row = StaffMember(
                id=staff_id,
                username=username,
                role=role.value,
                password_hash=self.hasher.hash(password),
                totp_sealed=seal(key, secret, _aad(staff_id)),
                last_totp_step=None,
                failures=0,
                last_failure_at=None,
                created_at=_now(),
                disabled_at=None,
            )
            session.add(row)
            record(
                session,
                actor=actor,
                action="staff.created",
                details={"staff": username, "role": role.value},
            )
            member = _view(row)
        return Enrolment(member, secret, totp_uri(secret, username, self.issuer))

    def reset(self, username: str, password: str, *, actor: str) -> Enrolment:
        """Give an account a new password and a new TOTP secret (a lost phone), unlock it and
        end its sessions."""
        check_password(password, username)
        secret = new_totp_secret()
        with self.sessions() as session, session.begin():
            row = self._member(session, username)
            row.password_hash = self.hasher.hash(password)
            row.totp_sealed = seal(self.keyring.data_key(row.id), secret, _aad(row.id))
            row.last_totp_step = None
            row.failures = 0
            row.last_failure_at = None
            session.execute(delete(StaffSession).where(StaffSession.staff_id == row.id))
            record(session, actor=actor, action="staff.reset", details={"staff": username})
            member = _view(row)
        return Enrolment(member, secret, totp_uri(secret, username, self.issuer))

    def set_role(self, username: str, role: Role, *, actor: str) -> StaffView:
        """Change an account's role; it applies to the member's next page."""
        with self.sessions() as session, session.begin():
            row = self._member(session, username)
            before = row.role
            row.role = role.value
            record(
                session,
                actor=actor,
                action="staff.role_changed",
                details={"staff": username, "from": before, "to": role.value},
            )
            return _view(row)

    def disable(self, username: str, *, actor: str) -> StaffView:
        """Close an account: no more logins, and its open sessions end now."""
        with self.sessions() as session, session.begin():
            row = self._member(session, username)
            if row.disabled_at is None:
                row.disabled_at = _now()
                session.execute(delete(StaffSession).where(StaffSession.staff_id == row.id))
                record(session, actor=actor, action="staff.disabled", details={"staff": username})
            return _view(row)

    def members(self) -> list[StaffView]:
        """Every account, by username."""
        with self.sessions() as session:
            rows = session.scalars(select(StaffMember).order_by(StaffMember.username)).all()
            return [_view(row) for row in rows]

    # --- Logging in ---------------------------------------------------------------------------

    def log_in(self, username: str, password: str, code: str) -> str | None:
        """A new session token for the right username, password and TOTP code on an account
        that is neither disabled nor locked; None otherwise, whatever was wrong."""
        now = _now()
        with self.sessions() as session, session.begin():
            row = session.scalar(
                select(StaffMember).where(StaffMember.username == username).with_for_update()
            )
            password_ok = self._password_matches(row, password)
            if row is None:
                record(session, actor="staff console", action="staff.login_failed", now=now)
                return None
            locked = locked_until(row.failures, _utc_or_none(row.last_failure_at))
            step = None
            if password_ok and row.disabled_at is None and (locked is None or locked <= now):
                secret = unseal(self.keyring.data_key(row.id), row.totp_sealed, _aad(row.id))
                step = totp_step(secret, code.strip(), now, row.last_totp_step)
            if step is None:
                if locked is not None and locked > now:
                    # Tries during a lockout neither count nor prolong it: an attacker cannot
                    # keep an account (the only admin's) locked forever.
                    record(
                        session,
                        actor=f"staff:{row.username}",
                        action="staff.login_failed",
                        details={"locked": True},
                        now=now,
                    )
                    return None
                if locked is not None:
                    row.failures = 0  # the lockout ran out: a fresh count starts
                row.failures += 1
                row.last_failure_at = now
                record(
                    session,
                    actor=f"staff:{row.username}",
                    action="staff.login_failed",
                    details={"failures": row.failures},
                    now=now,
                )
                return None
            if self.hasher.check_needs_rehash(row.password_hash):
                row.password_hash = self.hasher.hash(password)
            row.failures = 0
            row.last_failure_at = None
            row.last_totp_step = step
            token = new_session_token()
            session.add(
                StaffSession(
                    token_sha256=session_digest(token),
                    staff_id=row.id,
                    created_at=now,
                    last_seen_at=now,
                    expires_at=now + SESSION_MAX,
                )
            )
            record(session, actor=f"staff:{row.username}", action="staff.logged_in", now=now)
        return token

    @cached_property
    def _decoy_hash(self) -> str:
        """Verified when the username is unknown, so that such a login costs what any other
        does; made with the same parameters as real hashes, at the first login that needs it."""
        return self.hasher.hash(new_session_token())

    def _password_matches(self, row: StaffMember | None, password: str) -> bool:
        try:
            return self.hasher.verify(row.password_hash if row else self._decoy_hash, password)
        except (VerificationError, InvalidHashError):
            return False

    def who(self, token: str | None) -> StaffView | None:
        """The staff member a session token belongs to, if the session is live (not idle 30
        minutes, not older than 8 hours, its account not disabled); it counts as activity."""
        if not token:
            return None
        now = _now()
        digest = session_digest(token)
        with self.sessions() as session:
            found = session.execute(
                select(StaffSession, StaffMember)
                .join(StaffMember, StaffMember.id == StaffSession.staff_id)
                .where(StaffSession.token_sha256 == digest)
            ).first()
            if found is None:
                return None
            live, member = found[0], found[1]
            last_seen = _utc(live.last_seen_at)
            if (
                _utc(live.expires_at) <= now
                or last_seen + SESSION_IDLE <= now
                or member.disabled_at is not None
            ):
                return None
            view = _view(member)
        if now - last_seen >= TOUCH_EVERY:
            with self.sessions() as session, session.begin():
                session.execute(
                    update(StaffSession)
                    .where(StaffSession.token_sha256 == digest)
                    .values(last_seen_at=now)
                )
        return view

    def log_out(self, token: str) -> None:
        """End a session now."""
        with self.sessions() as session, session.begin():
            row = session.get(StaffSession, session_digest(token))
            if row is None:
                return
            member = session.get(StaffMember, row.staff_id)
            session.delete(row)
            if member is not None:
                record(session, actor=f"staff:{member.username}", action="staff.logged_out")

    def forget_expired(self, now: dt.datetime | None = None) -> int:
        """Delete sessions past their end or idle too long (a chore); how many went."""
        now = now or _now()
        with self.sessions() as session, session.begin():
            result = session.execute(
                delete(StaffSession).where(
                    (StaffSession.expires_at <= now)
                    | (StaffSession.last_seen_at <= now - SESSION_IDLE)
                )
            )
        return int(result.rowcount)  # type: ignore[attr-defined]

    def _member(self, session: Session, username: str) -> StaffMember:
        row = session.scalar(
            select(StaffMember).where(StaffMember.username == username).with_for_update()
        )
        if row is None:
            raise StaffNotFound(username)
        return row


def _view(row: StaffMember) -> StaffView:
    return StaffView(
        id=row.id,
        username=row.username,
        role=Role(row.role),
        created_at=_utc(row.created_at),
        disabled=row.disabled_at is not None,
        locked_until=locked_until(row.failures, _utc_or_none(row.last_failure_at)),
    )


def _aad(staff_id: str) -> bytes:
    return f"staff:{staff_id}:totp".encode()


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _utc(moment: dt.datetime) -> dt.datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


def _utc_or_none(moment: dt.datetime | None) -> dt.datetime | None:
    return None if moment is None else _utc(moment)
