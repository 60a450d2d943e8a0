"""Tables owned by privacy requests: the requests themselves and every move of their status.

Nothing here is personal in clear. The requester's address, residence, the agent's details
and the access package are sealed under a key made for the request alone; the address is
also kept as a blind index, so a person's requests can be found once they prove it."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Date,
    DateTime,
    ForeignKey,
    Integer,
    LargeBinary,
    String,
    Text,
)
from sqlalchemy.orm import Mapped, mapped_column

from pledge.db import Base


class PrivacyRequest(Base):
    """One request: what was asked, by which channel, where it stands, and its deadlines."""

    __tablename__ = "privacy_requests"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    kind: Mapped[str] = mapped_column(String(40))
    channel: Mapped[str] = mapped_column(String(20))
    status: Mapped[str] = mapped_column(String(30), index=True)
    regime: Mapped[str] = mapped_column(String(8))
    email_index: Mapped[str | None] = mapped_column(String(64), index=True)
    subject_id: Mapped[str | None] = mapped_column(String(36), index=True)
    """The vault subject the proven address belongs to; None until verified, or when none."""
    sealed: Mapped[bytes | None] = mapped_column(LargeBinary)
    """The requester's details (address, residence, agent, correction asked for), sealed under
    the request's own key; None once the record's retention ended."""
    by_agent: Mapped[bool] = mapped_column(Boolean)
    entered_by: Mapped[str | None] = mapped_column(String(200))
    """The staff member who typed in a request received by e-mail, phone or post."""
    tier: Mapped[str] = mapped_column(String(40))
    attempts: Mapped[int] = mapped_column(Integer)
    """Sets of data points given that did not match."""
    staff_check: Mapped[bool] = mapped_column(Boolean)
    """Too little is held to verify the person online: the privacy team must do it."""
    received_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    received_on: Mapped[dt.date] = mapped_column(Date)
    """The business's local date of receipt: day 1 of the deadlines."""
    acknowledge_by: Mapped[dt.date | None] = mapped_column(Date)
    answer_by: Mapped[dt.date] = mapped_column(Date, index=True)
    extended_answer_by: Mapped[dt.date] = mapped_column(Date)
    extended: Mapped[bool] = mapped_column(Boolean)
    acknowledged_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    verified_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    work_started_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    """When the job carrying the request out was queued: from then on it is neither approved
    again nor denied, so the work is never done twice nor contradicted."""
    closed_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    denial_reason: Mapped[str | None] = mapped_column(Text)
    outcome: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    """What fulfilment did, in counts and reasons; never a personal value."""
    package_token_sha256: Mapped[str | None] = mapped_column(String(64))
    package_expires_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    package_sealed: Mapped[bytes | None] = mapped_column(LargeBinary)
    reminded_on: Mapped[dt.date | None] = mapped_column(Date)
    """The last day staff were reminded of this request's deadline."""
    forget_after: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    """When the sealed details and their key are destroyed (closed + `records_kept`)."""


class RequestTransition(Base):
    """One move of a request's status, by whom, when, with a note that holds no personal data."""

    __tablename__ = "request_transitions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    request_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("privacy_requests.id"), index=True
    )
    from_status: Mapped[str | None] = mapped_column(String(30))
    to_status: Mapped[str] = mapped_column(String(30))
    actor: Mapped[str] = mapped_column(String(200))
    at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    note: Mapped[str | None] = mapped_column(Text)
