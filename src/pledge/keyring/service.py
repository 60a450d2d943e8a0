"""The keyring: per-subject data keys in the key store, wrapped by the master-key provider."""

from __future__ import annotations

import datetime as dt
import logging
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import CursorResult, Engine, delete, func, insert, select
from sqlalchemy.orm import Session, sessionmaker

from pledge.config import KeyProviderKind, Settings
from pledge.db import create_database_engine, reading, session_factory
from pledge.keyring.providers import KEY_BYTES, LocalKeyFile, MasterKeyProvider, Pkcs11Token
from pledge.keyring.tables import DataKey, KeystoreBase

log = logging.getLogger(__name__)


class SubjectKeyDestroyed(Exception):
    """The subject's data key no longer exists: its data cannot be decrypted."""


@dataclass(frozen=True)
class RotationReport:
    """What `rotate_master_key` did."""

    new_key_id: str
    rewrapped: int
    retired: tuple[str, ...]


class Keyring:
    """Creates, finds and destroys subjects' data keys; computes blind indexes."""

    def __init__(self, provider: MasterKeyProvider, sessions: sessionmaker[Session]) -> None:
        self.provider = provider
        self.sessions = sessions

    def create_data_key(self, subject_id: str) -> bytes:
        """A new random data key for `subject_id`, stored wrapped (committed before returning)."""
        return self.create_data_keys([subject_id])[subject_id]

    def create_data_keys(self, subject_ids: Sequence[str]) -> dict[str, bytes]:
        """New random data keys for `subject_ids`, stored wrapped in one committed transaction."""
        if not subject_ids:
            return {}
        keys = {subject_id: secrets.token_bytes(KEY_BYTES) for subject_id in subject_ids}
        now = dt.datetime.now(dt.UTC)
        rows = []
        for subject_id, data_key in keys.items():
            key_id, wrapped = self.provider.wrap(data_key, _aad(subject_id))
            rows.append(
                {
                    "subject_id": subject_id,
                    "wrapped": wrapped,
                    "master_key_id": key_id,
                    "created_at": now,
                }
            )
        with self.sessions() as session, session.begin():
            session.execute(insert(DataKey), rows)
        return keys

    def data_key(self, subject_id: str) -> bytes:
        """The subject's data key; raise `SubjectKeyDestroyed` if it was destroyed."""
        with reading(self.sessions) as session:
            row = session.get(DataKey, subject_id)
            if row is None:
                raise SubjectKeyDestroyed(subject_id)
            return self.provider.unwrap(row.master_key_id, row.wrapped, _aad(subject_id))

    def data_keys(self, subject_ids: Sequence[str]) -> dict[str, bytes]:
        """The data keys of `subject_ids` that exist (destroyed ones are simply absent)."""
        if not subject_ids:
            return {}
        with reading(self.sessions) as session:
            rows = session.scalars(select(DataKey).where(DataKey.subject_id.in_(subject_ids))).all()
            return {
                row.subject_id: self.provider.unwrap(
                    row.master_key_id, row.wrapped, _aad(row.subject_id)
                )
                for row in rows
            }

    def destroy_data_keys(self, subject_ids: Sequence[str]) -> None:
        """Delete these data keys for good, in one transaction."""
        if subject_ids:
            with self.sessions() as session, session.begin():
                session.execute(delete(DataKey).where(DataKey.subject_id.in_(subject_ids)))

    def destroy_data_key(self, subject_id: str) -> bool:
        """Delete the subject's data key for good; true if there was one."""
        with self.sessions() as session, session.begin():
            deleted = session.execute(delete(DataKey).where(DataKey.subject_id == subject_id))
        return bool(cast("CursorResult[Any]", deleted).rowcount)

    def blind_index(self, kind: str, normalized: str) -> str:
        """The hex HMAC of an identity, under the blind-index key."""
        return self.provider.blind_index(f"{kind}:{normalized}".encode()).hex()

    def rotate_master_key(
        self, *, retire_previous: bool = False, batch: int = 1000
    ) -> RotationReport:
        """Make a new master key active and re-wrap every data key under it (values untouched).

        With `retire_previous`, old generations are destroyed once nothing uses them: after
        waiting long enough for every other process to wrap new keys under the new generation,
        and after a second pass re-wraps whatever they wrapped under the old one meanwhile.
        """
        new_key = self.provider.rotate()
        rewrapped = self._rewrap_all(batch)
        retired: list[str] = []
        if retire_previous:
            time.sleep(self.provider.refresh_seconds)
            rewrapped += self._rewrap_all(batch)
            in_use = self.master_keys_in_use()
            for key_id in self.provider.held_key_ids():
                if key_id != new_key and key_id not in in_use:
                    self.provider.retire(key_id)
                    retired.append(key_id)
        log.info("master key rotated to %s; %d data keys re-wrapped", new_key, rewrapped)
        return RotationReport(new_key, rewrapped, tuple(retired))

    def _rewrap_all(self, batch: int) -> int:
        """Re-wrap, batch by batch, every data key not under the active generation (which is
        just rotated in, or a newer one if another rotation ran meanwhile)."""
        rewrapped = 0
        while True:
            active = self.provider.active_key_id
            with self.sessions() as session, session.begin():
                rows = session.scalars(
                    select(DataKey).where(DataKey.master_key_id != active).limit(batch)
                ).all()
                for row in rows:
                    data_key = self.provider.unwrap(
                        row.master_key_id, row.wrapped, _aad(row.subject_id)
                    )
                    row.master_key_id, row.wrapped = self.provider.wrap(
                        data_key, _aad(row.subject_id)
                    )
                rewrapped += len(rows)
            if len(rows) < batch:
                return rewrapped

    def master_keys_in_use(self) -> dict[str, int]:
        """How many data keys each master key wraps."""
        with self.sessions() as session:
            rows = session.execute(
                select(DataKey.master_key_id, func.count()).group_by(DataKey.master_key_id)
            ).all()
            return dict(rows)


def _aad(subject_id: str) -> bytes:
    return f"pledge:data-key:{subject_id}".encode()


def open_keystore(url: str) -> tuple[Engine, sessionmaker[Session]]:
    """The key store's engine and sessions, its table created if absent."""
    engine = create_database_engine(url)
    KeystoreBase.metadata.create_all(engine)
    return engine, session_factory(engine)


def open_provider(settings: Settings) -> MasterKeyProvider:
    """The master-key provider the settings name."""
    if settings.key_provider is KeyProviderKind.PKCS11:
        if not (settings.pkcs11_library and settings.pkcs11_token_label and settings.pkcs11_pin):
            raise ValueError("the pkcs11 provider needs a library, a token label and a PIN")
        return Pkcs11Token(
            settings.pkcs11_library,
            settings.pkcs11_token_label,
            settings.pkcs11_pin.get_secret_value(),
            settings.pkcs11_key_label,
        )
    return LocalKeyFile(settings.master_key_file)
