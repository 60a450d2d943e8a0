"""Tables owned by the vault: subjects, their identities (blind-indexed) and sealed values."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import (
    BigInteger,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from pledge.db import Base

BigId = BigInteger().with_variant(Integer, "sqlite")


class Subject(Base):
    """A person Pledge holds data about, known only by a random ID."""

    __tablename__ = "subjects"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    shredded_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    """When the subject was erased: its key destroyed, its identities and values deleted."""
    age_band: Mapped[str | None] = mapped_column(String(10))
    """`child`, `teen` or `adult` (`pledge.policy.ages.AgeBand`), from a date of birth
    collected; None when none was. The date itself is only ever kept sealed."""
    age_band_until: Mapped[dt.date | None] = mapped_column(Date)
    """The first of the month after the band ends, when it is worked out again (coarse on
    purpose: the exact day would give the date of birth away)."""
    parental_consent_id: Mapped[str | None] = mapped_column(String(36), index=True, unique=True)
    """For a child's account: the parent's consent it was opened under."""
    kept_from: Mapped[str | None] = mapped_column(String(36), index=True)
    """For a record of values the law keeps through an erasure (tax records): the erased
    subject they were kept from. Such a record is frozen and has no identities."""
    frozen_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    """A child found without a parent's consent: no reads but those the law asks for, no
    marketing, no disclosure, until a parent consents or the subject is erased."""


class Identity(Base):
    """An e-mail, phone, social account or device that finds a subject: only its HMAC is kept."""

    __tablename__ = "identities"
    __table_args__ = (UniqueConstraint("kind", "digest"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    subject_id: Mapped[str] = mapped_column(ForeignKey("subjects.id"), index=True)
    kind: Mapped[str] = mapped_column(String(20))
    digest: Mapped[str] = mapped_column(String(64))
    """HMAC-SHA256 of the normalized identity under the blind-index key, in hex."""
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))


class PersonalValue(Base):
    """One value of one field, sealed under the subject's data key, with its provenance.

    Values are kept as submitted; a correction adds a new version and marks this one superseded.
    """

    __tablename__ = "personal_values"
    __table_args__ = (Index("ix_personal_values_subject_current", "subject_id", "superseded_at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    subject_id: Mapped[str] = mapped_column(ForeignKey("subjects.id"))
    category: Mapped[str] = mapped_column(String(200))
    collection_point: Mapped[str] = mapped_column(String(200))
    field: Mapped[str] = mapped_column(String(200))
    source: Mapped[str] = mapped_column(String(30))
    entered_by: Mapped[str | None] = mapped_column(String(200))
    """The staff member who entered it, for values received by phone, letter or meeting."""
    policy_version_id: Mapped[int] = mapped_column(ForeignKey("policy_versions.id"))
    collected_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    version: Mapped[int] = mapped_column(Integer)
    replaces_id: Mapped[int | None] = mapped_column(ForeignKey("personal_values.id"), index=True)
    """The version this one corrects. Indexed: deleting a value (shredding its subject) makes
    the database look for values that refer to it, which without an index reads the whole
    table once per deleted value (2 s per subject among 1,000,000)."""
    superseded_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    sealed: Mapped[bytes] = mapped_column(LargeBinary)
    redacted_sealed: Mapped[bytes | None] = mapped_column(LargeBinary)
    """For scanned free text: the copy with personal data masked, for publication (also sealed)."""
    findings: Mapped[str | None] = mapped_column(Text)
    """For scanned free text: JSON counts of what was found by kind, never the values found."""
