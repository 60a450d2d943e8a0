"""The key store's one table. It lives in its own database (PLEDGE_KEYSTORE_URL), never in the
main one, so that a restored copy of the main database never brings an erased key back."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import DateTime, LargeBinary, MetaData, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from pledge.db import NAMING_CONVENTION


class KeystoreBase(DeclarativeBase):
    """Base of the key store's tables (a MetaData apart from the main database's)."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class DataKey(KeystoreBase):
    """A subject's data key, wrapped by a master key."""

    __tablename__ = "data_keys"

    subject_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    wrapped: Mapped[bytes] = mapped_column(LargeBinary)
    master_key_id: Mapped[str] = mapped_column(String(100), index=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
