"""The sample shop (customers, orders, order lines, support tickets) on real databases.

Each test that takes `shop` runs on SQLite, on PostgreSQL (a schema of its own) and on
MariaDB (a database of its own), all dropped afterwards. MariaDB is reached at
PLEDGE_TEST_MARIADB_URL (default: the local server, root with no password); like PostgreSQL,
its absence skips those runs on a laptop and fails them under CI=true.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from pledge.datasets import ConnectedDatabases, DatasetFile, load_datasets
from tests.conftest import IN_CI, POSTGRESQL_ADMIN_URL

SHOP_FILE = Path(__file__).resolve().parents[2] / "src/pledge/reference/shop-datasets.yaml"
MARIADB_URL = os.environ.get(
    "PLEDGE_TEST_MARIADB_URL", "mysql+pymysql://root@127.0.0.1:3306/test?charset=utf8mb4"
)
MASK_KEY = b"test-mask-key-0123456789abcdef"
URL_ENV = "PLEDGE_SHOP_DATABASE_URL"
SHOP_BACKENDS = ("sqlite", "postgresql", "mariadb")

metadata = sa.MetaData()
customers = sa.Table(
    "customers",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("email", sa.String(320), nullable=False, unique=True),
    sa.Column("phone", sa.String(32), index=True),
    sa.Column("full_name", sa.String(200)),
)
orders = sa.Table(
    "orders",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("customer_id", sa.ForeignKey("customers.id"), nullable=False, index=True),
    sa.Column("total_cents", sa.Integer, nullable=False),
    sa.Column("shipping_address", sa.String(500)),
)
order_lines = sa.Table(
    "order_lines",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("order_id", sa.ForeignKey("orders.id"), nullable=False, index=True),
    sa.Column("product", sa.String(200), nullable=False),
    sa.Column("quantity", sa.Integer, nullable=False),
    sa.Column("price_cents", sa.Integer, nullable=False),
)
support_tickets = sa.Table(
    "support_tickets",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("customer_id", sa.ForeignKey("customers.id"), nullable=False, index=True),
    sa.Column("subject", sa.String(200)),
    sa.Column("body", sa.Text),
)

ALICE = {"email": "alice@example.com", "phone": "+14155550101"}
"""The person the tests ask about."""
SAMPLE_ROWS: dict[sa.Table, list[dict[str, Any]]] = {
    customers: [
        {"id": 1, "email": "alice@example.com", "phone": "+14155550101", "full_name": "Alice"},
        {"id": 2, "email": "bob@example.com", "phone": "+14155550102", "full_name": "Bob"},
    ],
    orders: [
        {"id": 10, "customer_id": 1, "total_cents": 4250, "shipping_address": "1 Elm St"},
        {"id": 11, "customer_id": 1, "total_cents": 1000, "shipping_address": "9 Oak Ave"},
        {"id": 20, "customer_id": 2, "total_cents": 990, "shipping_address": "5 Pine Rd"},
    ],
    order_lines: [
        {"id": 100, "order_id": 10, "product": "Frame", "quantity": 1, "price_cents": 4000},
        {"id": 101, "order_id": 10, "product": "Cable", "quantity": 1, "price_cents": 250},
        {"id": 110, "order_id": 11, "product": "Stand", "quantity": 2, "price_cents": 500},
        {"id": 200, "order_id": 20, "product": "Cable", "quantity": 1, "price_cents": 990},
    ],
    support_tickets: [
        {"id": 1000, "customer_id": 1, "subject": "Broken frame", "body": "It cracked."},
        {"id": 1001, "customer_id": 1, "subject": "Refund", "body": "Call me at 555-0101."},
        {"id": 2000, "customer_id": 2, "subject": "Hello", "body": "Bob here."},
    ],
}


def _reachable(url: str, name: str, variable: str) -> None:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as connection:
            connection.execute(sa.text("SELECT 1"))
    except OperationalError as error:
        message = f"{name} is not reachable at {url}: {error.orig}"
        if IN_CI:
            pytest.fail(f"{message} (CI=true: a missing server is a failure)", pytrace=False)
        pytest.skip(f"{message} (set {variable} to run these tests)")
    finally:
        engine.dispose()


@pytest.fixture(scope="session")
def mariadb_url() -> str:
    """The MariaDB (or MySQL) server's URL (skipped on a laptop without one, a failure under
    CI=true)."""
    _reachable(MARIADB_URL, "MariaDB", "PLEDGE_TEST_MARIADB_URL")
    return MARIADB_URL


@pytest.fixture(scope="session")
def postgresql_url() -> str:
    """The PostgreSQL server's URL, with the same rule."""
    _reachable(POSTGRESQL_ADMIN_URL, "PostgreSQL", "PLEDGE_TEST_POSTGRESQL_URL")
    return POSTGRESQL_ADMIN_URL


@dataclass
class Shop:
    """The sample shop's database on one backend."""

    backend: str
    url: str
    engine: sa.Engine

    @property
    def environ(self) -> dict[str, str]:
        """The environment the dataset file reads its URL from."""
        return {URL_ENV: self.url}

    def rows(self, table: sa.Table) -> list[dict[str, Any]]:
        """Every row of `table`, by id."""
        with self.engine.connect() as connection:
            result = connection.execute(sa.select(table).order_by(table.c.id))
            return [dict(row) for row in result.mappings()]

    def row(self, table: sa.Table, row_id: int) -> dict[str, Any] | None:
        """One row of `table`, or None when it is gone."""
        return next((row for row in self.rows(table) if row["id"] == row_id), None)

    def run(self, *statements: str) -> None:
        """Run SQL statements in one transaction."""
        with self.engine.begin() as connection:
            for statement in statements:
                connection.execute(sa.text(statement))


@pytest.fixture(params=SHOP_BACKENDS)
def empty_shop(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Shop]:
    """A database of its own for the sample shop, with no tables yet."""
    backend: str = request.param
    name = f"pledge_shop_{uuid.uuid4().hex[:12]}"
    admin: sa.Engine | None = None
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path / name}.db"
    elif backend == "postgresql":
        server: str = request.getfixturevalue("postgresql_url")
        admin = sa.create_engine(server, isolation_level="AUTOCOMMIT")
        with admin.connect() as connection:
            connection.execute(sa.text(f'CREATE SCHEMA "{name}"'))
        # The schema is the connection's search path: the dataset file names bare tables.
        url = (
            make_url(server)
            .update_query_dict({"options": f"-csearch_path={name}"})
            .render_as_string(hide_password=False)
        )
    else:
        server = request.getfixturevalue("mariadb_url")
        admin = sa.create_engine(server, isolation_level="AUTOCOMMIT")
        with admin.connect() as connection:
            connection.execute(sa.text(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4"))
        url = make_url(server).set(database=name).render_as_string(hide_password=False)
    engine = sa.create_engine(url)
    try:
        yield Shop(backend, url, engine)
    finally:
        engine.dispose()
        if admin is not None:
            with admin.connect() as connection:
                if backend == "postgresql":
                    connection.execute(sa.text(f'DROP SCHEMA "{name}" CASCADE'))
                else:
                    connection.execute(sa.text(f"DROP DATABASE `{name}`"))
            admin.dispose()


@pytest.fixture
def shop(empty_shop: Shop) -> Shop:
    """The sample shop: Alice and Bob, their orders, order lines and support tickets."""
    metadata.create_all(empty_shop.engine)
    with empty_shop.engine.begin() as connection:
        for table, rows in SAMPLE_ROWS.items():
            connection.execute(table.insert(), rows)
    return empty_shop


@pytest.fixture(scope="session")
def shop_file() -> DatasetFile:
    """The reference shop's dataset file."""
    return load_datasets(SHOP_FILE)


@pytest.fixture
def connected(shop: Shop, shop_file: DatasetFile) -> Iterator[ConnectedDatabases]:
    """The shop as a connected database, closed after the test."""
    with ConnectedDatabases(shop_file, mask_key=MASK_KEY, environ=shop.environ) as databases:
        yield databases
