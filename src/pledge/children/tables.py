"""Tables owned by the children package: parents' consents, asked for and given.

Until a parent consents, only the parent's contact is kept, sealed under a key of the consent's
own (and as a blind index, so the parent can find it again in the privacy center); it is
destroyed with that key when the consent does not come within the policy's window. Evidence a
parent sends (a signed form, an ID's image) is sealed under a key of its own, destroyed once
staff have checked it."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Boolean, DateTime, LargeBinary, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from pledge.db import Base


class ParentalConsent(Base):
    """A parent's consent for one child, from the notice to the answer."""

    __tablename__ = "parental_consents"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    reason: Mapped[str] = mapped_column(String(20))
    """`sign_up` (a child signing up) or `discovered` (a child found among the subjects)."""
    collection_point: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(20), index=True)
    """`pending`, `in_review`, `consented`, `expired`, `revoked`, `superseded`."""
    parent_sealed: Mapped[bytes | None] = mapped_column(LargeBinary)
    """The parent's e-mail address, sealed; None once forgotten."""
    parent_index: Mapped[str | None] = mapped_column(String(64), index=True)
    token_sha256: Mapped[str | None] = mapped_column(String(64))
    """The parent's link; the token itself is only in the notice mailed to them."""
    child_token_sha256: Mapped[str | None] = mapped_column(String(64))
    """The link the parent hands the child to finish signing up (never the parent's own)."""
    child_subject_id: Mapped[str | None] = mapped_column(String(36), index=True)
    child_erased: Mapped[bool] = mapped_column(Boolean, default=False)
    """The child's data was erased after this consent closed (expired or revoked)."""
    third_party_asked: Mapped[bool] = mapped_column(Boolean)
    """Whether disclosure of the child's data to third parties is asked for, separately."""
    third_party_consented: Mapped[bool] = mapped_column(Boolean)
    method: Mapped[str | None] = mapped_column(String(30))
    evidence_reference: Mapped[str | None] = mapped_column(Text)
    """Where the proof is (a form's number, who checked an ID and when); never the proof."""
    evidence_sealed: Mapped[bytes | None] = mapped_column(LargeBinary)
    evidence_key_id: Mapped[str | None] = mapped_column(String(36))
    evidence_type: Mapped[str | None] = mapped_column(String(100))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), index=True)
    """The end of the window for the parent's answer."""
    decided_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    decided_by: Mapped[str | None] = mapped_column(String(200))
