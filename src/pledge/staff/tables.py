"""Tables owned by staff access: the accounts and their console sessions.

A password is kept as its argon2id hash; the TOTP secret is sealed under a data key of the
account's own (the keyring's), since the server must read it to check a code; a session's
token is only in the staff member's cookie, the table keeps its SHA-256."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import DateTime, ForeignKey, Integer, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from pledge.db import Base


class StaffMember(Base):
    """A person who works in the admin console, with one role."""

    __tablename__ = "staff_members"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    username: Mapped[str] = mapped_column(String(40), unique=True)
    role: Mapped[str] = mapped_column(String(30))
    password_hash: Mapped[str] = mapped_column(String(200))
    """argon2id, in the PHC string form (`$argon2id$v=19$m=...`)."""
    totp_sealed: Mapped[bytes] = mapped_column(LargeBinary)
    last_totp_step: Mapped[int | None] = mapped_column(Integer)
    """The 30-second step of the last code accepted: an older or equal one is refused."""
    failures: Mapped[int] = mapped_column(Integer)
    """Failed logins in a row."""
    last_failure_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    disabled_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))


class StaffSession(Base):
    """A console session, opened by a password and a TOTP code."""

    __tablename__ = "staff_sessions"

    token_sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    staff_id: Mapped[str] = mapped_column(String(36), ForeignKey("staff_members.id"), index=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    last_seen_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    """The session's hard end (`SESSION_MAX` after it opened); idleness ends it sooner."""
