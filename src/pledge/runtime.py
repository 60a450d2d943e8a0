"""What every request handler and command is given: settings, databases and keys, built once."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Request
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from pledge.config import Settings
from pledge.db import create_database_engine, session_factory
from pledge.keyring import Keyring, open_keystore, open_provider


@dataclass(frozen=True)
class Runtime:
    """The process's shared resources, built by the composition root and passed down."""

    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    keyring: Keyring
    keystore_engine: Engine

    @classmethod
    def build(cls, settings: Settings) -> Runtime:
        """Open the configured database, key store and master-key provider."""
        engine = create_database_engine(settings.database_url)
        keystore_engine, keystore_sessions = open_keystore(settings.keystore_url)
        keyring = Keyring(open_provider(settings), keystore_sessions)
        return cls(
            settings=settings,
            engine=engine,
            sessions=session_factory(engine),
            keyring=keyring,
            keystore_engine=keystore_engine,
        )

    def close(self) -> None:
        """Close the database connections this runtime opened."""
        self.engine.dispose()
        self.keystore_engine.dispose()

    def __enter__(self) -> Runtime:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


def runtime_of(request: Request) -> Runtime:
    """FastAPI dependency: the runtime of the app serving `request`."""
    runtime: Runtime = request.app.state.runtime
    return runtime
