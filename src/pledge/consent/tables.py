"""Tables owned by the consent package: the ledger, its chain head, and the current state."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import BigInteger, Boolean, DateTime, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from pledge.audit import ChainHeadColumns
from pledge.db import Base

BigId = BigInteger().with_variant(Integer, "sqlite")


class ConsentEventRow(Base):
    """One grant or withdrawal, append-only and hash-chained. Never an IP address."""

    __tablename__ = "consent_events"

    seq: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=False)
    subject_id: Mapped[str] = mapped_column(String(36), index=True)
    purpose: Mapped[str] = mapped_column(String(200))
    action: Mapped[str] = mapped_column(String(20))
    method: Mapped[str] = mapped_column(String(40))
    source: Mapped[str] = mapped_column(String(200))
    notice_sha256: Mapped[str] = mapped_column(String(64))
    policy_version: Mapped[str] = mapped_column(String(64))
    at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    prompted_by_pledge: Mapped[bool] = mapped_column(Boolean)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


class ConsentHead(ChainHeadColumns, Base):
    """The ledger's head; appending locks this row, so the chain never forks."""

    __tablename__ = "consent_head"


class ConsentChoice(Base):
    """The current choice per subject and purpose: a cache the ledger can always rebuild."""

    __tablename__ = "consent_choices"

    subject_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    purpose: Mapped[str] = mapped_column(String(200), primary_key=True)
    granted: Mapped[bool] = mapped_column(Boolean)
    seq: Mapped[int] = mapped_column(BigId)
    at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    method: Mapped[str] = mapped_column(String(40))
    expires_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))


class ConsentVisitor(Base):
    """A browser that answered the cookie banner: a random ID Pledge made, and nothing else.

    Its consent events are keyed by this ID like a subject's; it holds no personal data and is
    never a vault subject."""

    __tablename__ = "consent_visitors"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
