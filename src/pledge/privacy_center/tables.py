"""Tables owned by the privacy center: e-mail proofs (one-time codes) and visitor sessions."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import DateTime, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from pledge.db import Base


class EmailChallenge(Base):
    """A one-time code sent to an address. Only digests are kept: the address's blind index
    and a keyed hash of the code."""

    __tablename__ = "email_challenges"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    email_index: Mapped[str] = mapped_column(String(64), index=True)
    code_digest: Mapped[str] = mapped_column(String(64))
    attempts: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    verified_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))


class CenterSession(Base):
    """A privacy-center session opened by a proven address; the token itself is only in the
    person's cookie."""

    __tablename__ = "center_sessions"

    token_sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    email_index: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
