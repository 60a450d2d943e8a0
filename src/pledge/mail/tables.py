"""Tables owned by the mail package: messages, unsubscribe links and the suppression list."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import JSON, DateTime, LargeBinary, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from pledge.db import Base


class MailMessage(Base):
    """A message Pledge was asked to send, and what became of it. A marketing message keeps
    no address (it is read from the vault, for its purpose, right before sending); a
    transactional one keeps its address and text sealed under a key of its own, destroyed once
    the message is sent."""

    __tablename__ = "mail_messages"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    kind: Mapped[str] = mapped_column(String(20))
    subject_id: Mapped[str | None] = mapped_column(String(36), index=True)
    campaign: Mapped[str | None] = mapped_column(String(200))
    subject_line: Mapped[str] = mapped_column(String(300))
    text: Mapped[str | None] = mapped_column(Text)
    """A marketing message's text (the organization's own words, the same for every person)."""
    sealed: Mapped[bytes | None] = mapped_column(LargeBinary)
    """A transactional message's address and text, sealed with the message's own key."""
    status: Mapped[str] = mapped_column(String(20))
    reasons: Mapped[list[str]] = mapped_column(JSON)
    """Why a message was withheld: the decision's reasons, or the suppression."""
    job_id: Mapped[str] = mapped_column(String(36))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    sent_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))


class UnsubscribeLink(Base):
    """An unsubscribe link of a sent marketing message; the token itself is only in the mail."""

    __tablename__ = "unsubscribe_links"

    token_sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    message_id: Mapped[str] = mapped_column(String(36))
    subject_id: Mapped[str] = mapped_column(String(36), index=True)
    purpose: Mapped[str] = mapped_column(String(200))
    email_index: Mapped[str] = mapped_column(String(64))
    """Blind index of the address the message went to, for the suppression list."""
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    used_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))


class Suppression(Base):
    """An address that must never get marketing mail again, by blind index only."""

    __tablename__ = "mail_suppressions"

    email_index: Mapped[str] = mapped_column(String(64), primary_key=True)
    reason: Mapped[str] = mapped_column(String(40))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
