"""Tables owned by the policy package."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Boolean, Date, DateTime, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from pledge.db import Base


class PolicyVersion(Base):
    """A published policy version: immutable once written, identified by its content hash."""

    __tablename__ = "policy_versions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    content_hash: Mapped[str] = mapped_column(String(64), unique=True)
    version: Mapped[str] = mapped_column(String(64))
    effective_date: Mapped[dt.date] = mapped_column(Date, index=True)
    material: Mapped[bool] = mapped_column(Boolean)
    published_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    published_by: Mapped[str] = mapped_column(String(200))
    source_text: Mapped[str] = mapped_column(Text)
    """The YAML as published, comments and all."""
