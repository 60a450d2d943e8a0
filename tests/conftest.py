"""Shared fixtures: real databases (SQLite and PostgreSQL), migrated once, a savepoint per test.

Every test that takes `runtime` (or `database_url`) runs once per backend. PostgreSQL is
reached at PLEDGE_TEST_POSTGRESQL_URL (default: the local server with trust auth); when it is
absent the PostgreSQL runs are skipped with a message on a laptop, and fail under CI=true.
"""

from __future__ import annotations

import dataclasses
import email.policy
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path
from typing import Any

import hypothesis
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Connection, Engine, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from pledge.apikeys import create_api_key
from pledge.app import Services, build_services, create_app
from pledge.config import Environment, Settings
from pledge.db import create_database_engine
from pledge.keyring import Keyring, LocalKeyFile
from pledge.keyring.tables import KeystoreBase
from pledge.migrations import upgrade_database
from pledge.policy import load_policy_file, publish_policy
from pledge.runtime import Runtime
from tests.people import collect_ada

REPO = Path(__file__).resolve().parents[1]
REFERENCE_POLICY = REPO / "policies" / "reference.yaml"
POSTGRESQL_ADMIN_URL = os.environ.get(
    "PLEDGE_TEST_POSTGRESQL_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
IN_CI = os.environ.get("CI", "").lower() == "true"
KEYS_DIR = Path(tempfile.mkdtemp(prefix="pledge-test-keys-"))
"""Master-key files of the test run: never in the working tree."""
BACKENDS = ("sqlite", "postgresql")

# Hypothesis's per-example deadline measures the machine's load, not Pledge: two cores shared
# with databases and browsers make a 200 ms deadline fail at random.
hypothesis.settings.register_profile("pledge", deadline=None)
hypothesis.settings.load_profile("pledge")


def _postgresql_admin() -> Engine:
    engine = create_engine(POSTGRESQL_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except OperationalError as error:
        engine.dispose()
        message = f"PostgreSQL is not reachable at {POSTGRESQL_ADMIN_URL}: {error.orig}"
        if IN_CI:
            pytest.fail(f"{message} (CI=true: a missing server is a failure)", pytrace=False)
        pytest.skip(f"{message} (set PLEDGE_TEST_POSTGRESQL_URL to run these tests)")
    return engine


class FreshDatabases:
    """Creates empty databases on a backend and drops them afterwards."""

    def __init__(self, backend: str, workdir: Path) -> None:
        self.backend = backend
        self.workdir = workdir
        self.created: list[str] = []
        self.admin = _postgresql_admin() if backend == "postgresql" else None

    def new(self) -> str:
        """The URL of a new, empty database."""
        name = f"pledge_test_{uuid.uuid4().hex[:12]}"
        if self.admin is None:
            return f"sqlite:///{self.workdir / name}.db"
        with self.admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
        self.created.append(name)
        return (
            make_url(POSTGRESQL_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
        )

    def copy(self, url: str) -> str:
        """A copy of the database at `url` (whose connections must all be closed), as a backup
        restored elsewhere would be."""
        name = f"pledge_copy_{uuid.uuid4().hex[:12]}"
        source = make_url(url).database
        assert source is not None
        if self.admin is None:
            target = self.workdir / f"{name}.db"
            shutil.copyfile(source, target)
            return f"sqlite:///{target}"
        with self.admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}" TEMPLATE "{source}"'))
        self.created.append(name)
        return make_url(url).set(database=name).render_as_string(hide_password=False)

    def dump(self, url: str) -> bytes:
        """Every byte a backup of the database would hold: the SQLite files, or `pg_dump`."""
        database = make_url(url).database
        assert database is not None
        if self.admin is None:
            files = [Path(database), Path(f"{database}-wal")]
            return b"".join(f.read_bytes() for f in files if f.exists())
        libpq = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
        return subprocess.run(["pg_dump", libpq], capture_output=True, check=True).stdout

    def drop_all(self) -> None:
        """Drop every database this object created."""
        if self.admin is None:
            return
        with self.admin.connect() as connection:
            for name in self.created:
                connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        self.admin.dispose()


@pytest.fixture(scope="session", params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """Which database backend this test runs on."""
    name: str = request.param
    return name


@pytest.fixture(scope="session")
def fresh_databases(
    backend: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[FreshDatabases]:
    """A factory of empty databases on the current backend."""
    databases = FreshDatabases(backend, tmp_path_factory.mktemp(backend))
    yield databases
    databases.drop_all()


@pytest.fixture
def empty_database_url(fresh_databases: FreshDatabases) -> str:
    """A new, empty database of its own (for migrations and CLI tests)."""
    return fresh_databases.new()


@pytest.fixture(scope="session")
def migrated_engine(fresh_databases: FreshDatabases) -> Iterator[Engine]:
    """One database per backend, migrated once for the whole session."""
    engine = create_database_engine(fresh_databases.new(), sqlite_write_lock_at_begin=False)
    upgrade_database(engine)
    yield engine
    engine.dispose()


def test_settings(database_url: str, **overrides: object) -> Settings:
    """Settings for a test: the test environment, a real secret, the reference policy."""
    values: dict[str, object] = {
        "environment": Environment.TEST,
        "database_url": database_url,
        "keystore_url": "sqlite://",
        "master_key_file": KEYS_DIR / "master.key",
        "secret_key": "test-secret-key-not-a-placeholder",
        "policy_file": REFERENCE_POLICY,
        "public_url": "https://privacy.example.test",
        # A queue file of its own: no test runs (or loses) another test's jobs.
        "jobs_url": f"sqlite:///{KEYS_DIR / f'jobs-{uuid.uuid4().hex}.db'}",
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[arg-type]


test_settings.__test__ = False  # type: ignore[attr-defined]  # a helper, not a test


@pytest.fixture(scope="session")
def keystore_engine(fresh_databases: FreshDatabases) -> Iterator[Engine]:
    """The key store of the session, a database apart from the main one, on the same backend."""
    engine = create_database_engine(fresh_databases.new(), sqlite_write_lock_at_begin=False)
    KeystoreBase.metadata.create_all(engine)
    yield engine
    engine.dispose()


def _url(engine: Engine) -> str:
    return engine.url.render_as_string(hide_password=False)


@pytest.fixture
def runtime(migrated_engine: Engine, keystore_engine: Engine) -> Iterator[Runtime]:
    """A runtime whose every commit, in both databases, lands in a savepoint rolled back after."""
    connection, keystore_connection = migrated_engine.connect(), keystore_engine.connect()
    outer, keystore_outer = connection.begin(), keystore_connection.begin()
    sessions = _savepoint_sessions(connection)
    settings = test_settings(_url(migrated_engine), keystore_url=_url(keystore_engine))
    keyring = Keyring(
        LocalKeyFile(settings.master_key_file), _savepoint_sessions(keystore_connection)
    )
    yield Runtime(
        settings=settings,
        engine=migrated_engine,
        sessions=sessions,
        keyring=keyring,
        keystore_engine=keystore_engine,
    )
    outer.rollback()
    keystore_outer.rollback()
    connection.close()
    keystore_connection.close()


def _savepoint_sessions(connection: Connection) -> sessionmaker[Session]:
    return sessionmaker(
        bind=connection, expire_on_commit=False, join_transaction_mode="create_savepoint"
    )


def api_headers(runtime: Runtime, *scopes: str) -> dict[str, str]:
    """Authorization headers of a new API key holding `scopes`."""
    _, token = create_api_key(runtime.sessions, name="test", scopes=scopes, created_by="tests")
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def session(runtime: Runtime) -> Iterator[Session]:
    """A session inside the test's rolled-back transaction."""
    with runtime.sessions() as s:
        yield s


REDIS_URL = os.environ.get("PLEDGE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


@pytest.fixture
def redis_url() -> str:
    """The Redis server for the production job queue (skipped on a laptop without one, a
    failure under CI=true)."""
    import redis  # noqa: PLC0415 - only the tests that use Redis need it

    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2)
    try:
        client.ping()
    except redis.RedisError as error:
        message = f"Redis is not reachable at {REDIS_URL}: {error}"
        if IN_CI:
            pytest.fail(f"{message} (CI=true: a missing server is a failure)", pytrace=False)
        pytest.skip(f"{message} (set PLEDGE_TEST_REDIS_URL to run these tests)")
    finally:
        client.close()
    return REDIS_URL


class SmtpInbox:
    """What a real SMTP server (aiosmtpd) on a free local port received."""

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []
        self.envelopes: list[tuple[str, list[str]]] = []

    async def handle_DATA(  # noqa: N802 - the name aiosmtpd calls
        self, _server: object, _session: object, envelope: Any
    ) -> str:
        parsed = BytesParser(policy=email.policy.default).parsebytes(envelope.original_content)
        self.messages.append(parsed)
        self.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
        return "250 Message accepted for delivery"


@pytest.fixture
def smtp_inbox() -> Iterator[tuple[SmtpInbox, int]]:
    """A real SMTP server for the test; its inbox and port."""
    from aiosmtpd.controller import Controller  # noqa: PLC0415

    inbox = SmtpInbox()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield inbox, port
    finally:
        controller.stop()


@pytest.fixture
def inbox(smtp_inbox: tuple[SmtpInbox, int]) -> SmtpInbox:
    """The test SMTP server's inbox."""
    return smtp_inbox[0]


@pytest.fixture
def mail_runtime(runtime: Runtime, smtp_inbox: tuple[SmtpInbox, int]) -> Runtime:
    """The test runtime sending mail to the test SMTP server, retrying failed jobs at once."""
    settings = runtime.settings.model_copy(
        update={"smtp_port": smtp_inbox[1], "jobs_first_retry_seconds": 0.0}
    )
    return dataclasses.replace(runtime, settings=settings)


@pytest.fixture
def services(mail_runtime: Runtime) -> Services:
    """Every capability wired on `mail_runtime`, with the reference policy in force."""
    publish_policy(mail_runtime.sessions, load_policy_file(REFERENCE_POLICY), published_by="tests")
    return build_services(mail_runtime)


@pytest.fixture
def client(mail_runtime: Runtime, services: Services) -> Iterator[TestClient]:
    """The app on `services`, reached over https (so secure cookies come back)."""
    app = create_app(mail_runtime.settings, mail_runtime, services)
    with TestClient(app, base_url="https://testserver") as test_client:
        yield test_client


@pytest.fixture
def person(services: Services) -> str:
    """Ada (tests/people.py), collected in the vault: returns her subject ID."""
    return collect_ada(services)
