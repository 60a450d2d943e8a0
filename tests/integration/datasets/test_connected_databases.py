"""Connected databases on real SQLite, PostgreSQL and MariaDB: the sample shop's customer is
found, shown, erased and corrected, and nobody else's rows move."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import sqlalchemy as sa
import yaml

from pledge.datasets import (
    ConnectedDatabases,
    DatasetFile,
    DatasetUnavailable,
    Retained,
    UnknownCategory,
    load_datasets_text,
    mask_value,
)
from tests.integration.conftest import (
    ALICE,
    MASK_KEY,
    SHOP_FILE,
    URL_ENV,
    Shop,
    customers,
    order_lines,
    orders,
    support_tickets,
)

Raw = dict[str, Any]


def shop_variant(mutate: Callable[[Raw], object]) -> DatasetFile:
    """The reference shop's dataset file, changed by `mutate`."""
    raw: Raw = copy.deepcopy(yaml.safe_load(SHOP_FILE.read_text()))
    mutate(raw)
    return load_datasets_text(yaml.safe_dump(raw, sort_keys=False), "variant.yaml")


def tables_of(raw: Raw) -> Raw:
    tables: Raw = raw["datasets"]["shop"]["tables"]
    return tables


@pytest.fixture
def connect(shop: Shop) -> Iterator[Callable[[DatasetFile], ConnectedDatabases]]:
    """Connect a variant of the dataset file to the shop; closed after the test."""
    opened: list[ConnectedDatabases] = []

    def open_variant(file: DatasetFile) -> ConnectedDatabases:
        databases = ConnectedDatabases(file, mask_key=MASK_KEY, environ=shop.environ)
        opened.append(databases)
        return databases

    yield open_variant
    for databases in opened:
        databases.close()


def bobs_rows(shop: Shop) -> list[list[dict[str, Any]]]:
    return [
        [r for r in shop.rows(customers) if r["id"] == 2],
        [r for r in shop.rows(orders) if r["customer_id"] == 2],
        [r for r in shop.rows(order_lines) if r["order_id"] == 20],
        [r for r in shop.rows(support_tickets) if r["customer_id"] == 2],
    ]


# --- Finding and access ---------------------------------------------------------------------


def test_a_person_is_found_through_their_identities_and_every_reference_below_them(
    connected: ConnectedDatabases,
) -> None:
    located = connected.find({"email": "alice@example.com"})

    assert located.keys("shop", "customers") == (1,)
    assert located.keys("shop", "orders") == (10, 11)
    assert located.keys("shop", "order_lines") == (100, 101, 110)
    assert located.keys("shop", "support_tickets") == (1000, 1001)
    assert located.total == 8


def test_any_spelling_of_the_email_or_the_phone_finds_the_same_person(
    connected: ConnectedDatabases,
) -> None:
    by_email = connected.find({"email": "  Alice@Example.COM "})
    by_phone = connected.find({"phone": "(415) 555-0101"})
    by_both = connected.find({"email": "alice@example.com", "phone": ["+1 415 555 0101"]})

    assert by_email == by_phone == by_both
    assert by_email.keys("shop", "customers") == (1,)


def test_nobody_is_found_for_an_unknown_address(connected: ConnectedDatabases) -> None:
    assert connected.find({"email": "carol@example.com"}).total == 0
    assert connected.access({"email": "carol@example.com"}) == []


def test_access_lists_each_category_of_the_persons_rows_and_nobody_elses(
    connected: ConnectedDatabases,
) -> None:
    records = connected.access(ALICE)

    where = [(r.table, r.key) for r in records]
    assert where == [
        ("customers", "1"),
        ("orders", "10"),
        ("orders", "11"),
        ("support_tickets", "1000"),
        ("support_tickets", "1001"),
        ("order_lines", "100"),
        ("order_lines", "101"),
        ("order_lines", "110"),
    ]
    customer = records[0]
    assert customer.dataset == "shop"
    assert dict(customer.values) == {
        "email": ("user.contact.email", "alice@example.com"),
        "phone": ("user.contact.phone_number", "+14155550101"),
        "full_name": ("user.name", "Alice"),
    }
    assert records[1].values["total_cents"] == ("user.behavior.purchase_history", "4250")
    assert records[1].values["shipping_address"].category == "user.contact.address"
    assert records[3].values["body"].value == "It cracked."
    shown = {value.value for record in records for value in record.values.values()}
    assert not shown & {"bob@example.com", "Bob", "5 Pine Rd", "Bob here."}


def test_a_person_with_more_orders_than_one_in_list_holds_is_found_whole(
    shop: Shop, connected: ConnectedDatabases
) -> None:
    many = range(5000, 6201)
    with shop.engine.begin() as connection:
        connection.execute(
            orders.insert(),
            [{"id": i, "customer_id": 1, "total_cents": i, "shipping_address": "x"} for i in many],
        )
        connection.execute(
            order_lines.insert(),
            [
                {"id": i, "order_id": i, "product": "Frame", "quantity": 1, "price_cents": 1}
                for i in many
            ],
        )

    located = connected.find(ALICE)
    report = connected.erase(ALICE)

    assert len(located.keys("shop", "orders")) == 2 + len(many)
    assert len(located.keys("shop", "order_lines")) == 3 + len(many)
    assert report.table("shop", "orders").values_masked == 2 + len(many)
    assert report.table("shop", "order_lines").rows_retained == 3 + len(many)


def test_every_lookup_is_an_equality_or_an_in_list_on_a_declared_column(
    connected: ConnectedDatabases,
) -> None:
    statements: list[str] = []

    def remember(*args: Any) -> None:
        statements.append(str(args[2]))

    sa.event.listen(sa.Engine, "before_cursor_execute", remember)
    try:
        connected.find(ALICE)
        connected.access(ALICE)
    finally:
        sa.event.remove(sa.Engine, "before_cursor_execute", remember)

    selects = [s for s in statements if s.lstrip().upper().startswith("SELECT")]
    lookups = [s for s in selects if "FROM" in s.upper()]
    assert lookups
    for statement in lookups:
        condition = statement.upper().partition("WHERE")[2]
        assert condition, f"a lookup without a condition reads the whole table: {statement}"
        assert " IN " in condition or " = " in condition, statement
        assert "LIKE" not in condition
        assert " OR " not in condition


# --- Erasure ---------------------------------------------------------------------------------


def test_erasure_masks_the_email_keeps_the_orders_with_their_totals_and_deletes_tickets(
    shop: Shop, connected: ConnectedDatabases
) -> None:
    report = connected.erase(ALICE)

    alice = shop.row(customers, 1)
    assert alice == {
        "id": 1,
        "email": mask_value(MASK_KEY, "alice@example.com", 64),
        "phone": None,
        "full_name": None,
    }
    assert "alice@example.com" not in {r["email"] for r in shop.rows(customers)}
    kept = [r for r in shop.rows(orders) if r["customer_id"] == 1]
    assert [(r["id"], r["total_cents"]) for r in kept] == [(10, 4250), (11, 1000)]
    assert [r["shipping_address"] for r in kept] == [
        mask_value(MASK_KEY, "1 Elm St"),
        mask_value(MASK_KEY, "9 Oak Ave"),
    ]
    assert [r["id"] for r in shop.rows(order_lines)] == [100, 101, 110, 200]
    assert [r["id"] for r in shop.rows(support_tickets)] == [2000]

    assert [(t.table, t.rows_found) for t in report.tables] == [
        ("order_lines", 3),
        ("support_tickets", 2),
        ("orders", 2),
        ("customers", 1),
    ]
    assert report.table("shop", "support_tickets").rows_deleted == 2
    assert report.table("shop", "orders").values_masked == 2
    assert report.table("shop", "orders").rows_retained == 2
    assert report.table("shop", "customers").values_masked == 1
    assert report.table("shop", "customers").values_nulled == 2
    assert report.table("shop", "customers").rows_deleted == 0
    assert report.counts()["shop.order_lines"]["rows_retained"] == 3
    assert report.categories() >= {"user.contact.email", "user.content.private"}


def test_an_erasure_lists_the_records_the_law_requires_to_keep_with_their_reason(
    connected: ConnectedDatabases,
) -> None:
    report = connected.erase(ALICE)

    assert [(r.table, r.rows) for r in report.retained] == [("order_lines", 3), ("orders", 2)]
    orders_kept = report.retained[1]
    assert orders_kept.dataset == "shop"
    assert orders_kept.reason == ("Orders are tax records, kept for seven years (26 CFR 1.6001-1).")


def test_another_customers_rows_are_untouched_by_an_erasure(
    shop: Shop, connected: ConnectedDatabases
) -> None:
    before = bobs_rows(shop)

    connected.erase(ALICE)

    assert bobs_rows(shop) == before


def test_a_second_erasure_finds_nothing_and_reports_zeros(
    shop: Shop, connected: ConnectedDatabases
) -> None:
    connected.erase(ALICE)
    after_first = [shop.rows(t) for t in (customers, orders, order_lines, support_tickets)]

    again = connected.erase(ALICE)

    assert again.changed == 0
    assert again.counts() == {}
    assert again.retained == ()
    assert all(t.rows_found == 0 for t in again.tables)
    assert [shop.rows(t) for t in (customers, orders, order_lines, support_tickets)] == (
        after_first
    )


def test_a_value_already_masked_is_not_masked_again(
    shop: Shop, connect: Callable[[DatasetFile], ConnectedDatabases]
) -> None:
    # The e-mail is kept here, so the person is found again after the first erasure.
    def keep_email(raw: Raw) -> None:
        tables_of(raw)["customers"]["columns"]["email"] = {
            "category": "user.contact.email",
            "erase": "keep",
        }

    databases = connect(shop_variant(keep_email))
    databases.erase(ALICE)
    masked = [r["shipping_address"] for r in shop.rows(orders)]

    again = databases.erase(ALICE)

    assert again.table("shop", "orders").rows_found == 2
    assert again.table("shop", "orders").values_masked == 0
    assert [r["shipping_address"] for r in shop.rows(orders)] == masked


def test_a_dry_run_reports_the_same_counts_and_changes_nothing(
    shop: Shop, connected: ConnectedDatabases
) -> None:
    tables = (customers, orders, order_lines, support_tickets)
    before = [shop.rows(t) for t in tables]

    dry = connected.erase(ALICE, dry_run=True)

    assert dry.dry_run
    assert [shop.rows(t) for t in tables] == before
    real = connected.erase(ALICE)
    assert dry.tables == real.tables
    assert dry.retained == real.retained


def test_an_erasure_that_fails_half_way_leaves_the_database_as_it_was(
    shop: Shop, connect: Callable[[DatasetFile], ConnectedDatabases]
) -> None:
    # Tickets are deleted first; nulling the orders' NOT NULL total then fails.
    def null_totals(raw: Raw) -> None:
        tables_of(raw)["orders"]["columns"]["total_cents"]["erase"] = "null"
        del tables_of(raw)["orders"]["keep"]

    databases = connect(shop_variant(null_totals))
    tables = (customers, orders, order_lines, support_tickets)
    before = [shop.rows(t) for t in tables]

    with pytest.raises(sa.exc.IntegrityError):
        databases.erase(ALICE)

    assert [shop.rows(t) for t in tables] == before


# --- Correction ------------------------------------------------------------------------------


def test_a_correction_writes_the_new_email_into_the_connected_table(
    shop: Shop, connected: ConnectedDatabases
) -> None:
    report = connected.correct(ALICE, "user.contact.email", "Alice.New@Example.com")

    assert report.changed == 1
    assert report.unchanged_records == ()
    assert shop.row(customers, 1) == {
        "id": 1,
        "email": "alice.new@example.com",
        "phone": "+14155550101",
        "full_name": "Alice",
    }
    assert connected.find({"email": "alice.new@example.com"}).keys("shop", "orders") == (10, 11)
    again = connected.correct(
        {"phone": "+14155550101"}, "user.contact.email", "alice.new@example.com"
    )
    assert again.changed == 0


def test_a_correction_leaves_the_orders_kept_as_tax_records_as_they_were(
    shop: Shop, connected: ConnectedDatabases
) -> None:
    # An order records where it was shipped: a person who moved corrects their address, not
    # the history of their orders, which the law requires to be kept as they are.
    before = shop.rows(orders)

    report = connected.correct(ALICE, "user.contact.address", "2 Birch Ln")

    assert report.changed == 0
    assert shop.rows(orders) == before
    assert report.unchanged_records == (
        Retained(
            "shop", "orders", "Orders are tax records, kept for seven years (26 CFR 1.6001-1).", 2
        ),
    )


def test_a_correction_still_moves_the_identity_in_a_kept_table_so_the_person_is_found(
    shop: Shop, connect: Callable[[DatasetFile], ConnectedDatabases]
) -> None:
    def customers_kept(raw: Raw) -> None:
        tables_of(raw)["customers"]["keep"] = {"reason": "Customer records are kept for audits."}

    databases = connect(shop_variant(customers_kept))

    report = databases.correct(ALICE, "user.contact.email", "alice.new@example.com")

    assert report.changed == 1
    assert report.unchanged_records == ()
    assert databases.find({"email": "alice.new@example.com"}).keys("shop", "orders") == (10, 11)
    names = databases.correct({"email": "alice.new@example.com"}, "user.name", "Alice L.")
    assert names.changed == 0
    assert [r.table for r in names.unchanged_records] == ["customers"]


def test_a_correction_changes_every_row_of_the_person_and_no_other(
    shop: Shop, connect: Callable[[DatasetFile], ConnectedDatabases]
) -> None:
    def orders_not_kept(raw: Raw) -> None:
        del tables_of(raw)["orders"]["keep"]

    databases = connect(shop_variant(orders_not_kept))
    before = bobs_rows(shop)

    report = databases.correct(ALICE, "user.contact.address", "2 Birch Ln")

    assert report.changed == 2
    assert report.unchanged_records == ()
    assert [r["shipping_address"] for r in shop.rows(orders) if r["customer_id"] == 1] == [
        "2 Birch Ln",
        "2 Birch Ln",
    ]
    assert bobs_rows(shop) == before


def test_a_correction_of_a_category_no_table_holds_is_refused(
    connected: ConnectedDatabases,
) -> None:
    with pytest.raises(UnknownCategory, match=r"user\.demographic\.gender"):
        connected.correct(ALICE, "user.demographic.gender", "x")


# --- Case-insensitive identities ------------------------------------------------------------


def test_a_case_insensitive_email_column_is_compared_in_lower_case(
    shop: Shop, connect: Callable[[DatasetFile], ConnectedDatabases]
) -> None:
    shop.run(
        "CREATE TABLE subscribers (id INTEGER PRIMARY KEY, email VARCHAR(320) NOT NULL)",
        "INSERT INTO subscribers (id, email) VALUES (1, 'Alice@Example.COM'), "
        "(2, 'BOB@example.com')",
    )
    if shop.backend != "mariadb":  # MariaDB has no expression index (its _ci collation needs none)
        shop.run("CREATE INDEX subscribers_email_lower ON subscribers (lower(email))")

    def add_subscribers(raw: Raw) -> None:
        tables_of(raw)["subscribers"] = {
            "primary_key": "id",
            "identities": {"email": {"column": "email", "case_insensitive": True}},
            "columns": {"email": {"category": "user.contact.email", "erase": "mask"}},
        }

    databases = connect(shop_variant(add_subscribers))

    assert databases.find(ALICE).keys("shop", "subscribers") == (1,)
    problems = databases.check()
    if shop.backend == "mariadb":
        assert problems == [
            (
                "datasets.shop.tables.subscribers: no index serves lookups by 'email', so each "
                "would read the whole table (CREATE INDEX ... ON subscribers (lower(email)))"
            )
        ]
    else:
        assert problems == []


# --- Checking the databases -----------------------------------------------------------------


def test_check_finds_nothing_wrong_with_the_sample_shop(connected: ConnectedDatabases) -> None:
    assert connected.check() == []


def test_check_reports_a_missing_table_a_missing_column_and_a_missing_index(
    shop: Shop, connect: Callable[[DatasetFile], ConnectedDatabases]
) -> None:
    shop.run("CREATE TABLE newsletter (id INTEGER PRIMARY KEY, email VARCHAR(320))")

    def change(raw: Raw) -> None:
        tables = tables_of(raw)
        tables["customers"]["columns"]["nickname"] = {"category": "user.name", "erase": "null"}
        tables["orders"]["columns"]["total_cents"]["erase"] = "mask"
        del tables["orders"]["keep"]
        tables["newsletter"] = {
            "primary_key": "id",
            "identities": {"email": "email"},
            "columns": {"email": {"category": "user.contact.email", "erase": "null"}},
        }
        tables["wishlists"] = {
            "primary_key": "id",
            "references": {"customer_id": "customers.id"},
            "erase": "delete_row",
        }

    problems = connect(shop_variant(change)).check()

    assert problems == [
        "datasets.shop.tables.customers: column 'nickname' does not exist",
        (
            "datasets.shop.tables.orders.columns.total_cents: masked, but the column does not "
            "hold text"
        ),
        (
            "datasets.shop.tables.newsletter: no index serves lookups by 'email', so each would "
            "read the whole table (CREATE INDEX ... ON newsletter (email))"
        ),
        "datasets.shop.tables.wishlists: the table does not exist",
    ]


def test_check_reports_a_url_that_is_not_set_and_a_server_not_reached(
    shop_file: DatasetFile,
) -> None:
    with ConnectedDatabases(shop_file, mask_key=MASK_KEY, environ={}) as databases:
        assert databases.check() == [
            f"datasets.shop: the environment variable {URL_ENV} (the database URL) is not set"
        ]
        with pytest.raises(DatasetUnavailable, match=URL_ENV):
            databases.find(ALICE)

    nowhere = {URL_ENV: "postgresql+psycopg://nobody:secret@127.0.0.1:1/none"}
    with ConnectedDatabases(shop_file, mask_key=MASK_KEY, environ=nowhere) as databases:
        (problem,) = databases.check()
    assert problem.startswith("datasets.shop: cannot read the database: ")
    assert "secret" not in problem


def test_a_url_that_is_not_one_is_refused_without_repeating_it(shop_file: DatasetFile) -> None:
    environ = {URL_ENV: "not a url, with password hunter2"}
    with ConnectedDatabases(shop_file, mask_key=MASK_KEY, environ=environ) as databases:
        (problem,) = databases.check()

    assert problem == f"datasets.shop: {URL_ENV} is not a SQLAlchemy URL"
    assert "hunter2" not in problem


def test_a_mask_key_too_short_is_refused(shop_file: DatasetFile) -> None:
    with pytest.raises(ValueError, match="16 bytes"):
        ConnectedDatabases(shop_file, mask_key=b"short", environ={})
