"""Every rule of the dataset file, each with a failing example naming its place."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from pledge.datasets import (
    ColumnErasure,
    DatasetsInvalid,
    check_against_policy,
    load_datasets,
    load_datasets_text,
)
from pledge.policy import load_policy_file
from pledge.vault import IdentityKind

REPO = Path(__file__).resolve().parents[3]
SHOP_FILE = REPO / "src" / "pledge" / "reference" / "shop-datasets.yaml"
REFERENCE_POLICY = REPO / "src" / "pledge" / "reference" / "reference.yaml"
Raw = dict[str, Any]
TABLES = "datasets.shop.tables"


@pytest.fixture(scope="module")
def shop_raw() -> Raw:
    loaded: Raw = yaml.safe_load(SHOP_FILE.read_text())
    return loaded


def problems_after(shop_raw: Raw, mutate: Callable[[Raw], object]) -> list[tuple[str, str]]:
    raw = copy.deepcopy(shop_raw)
    mutate(raw)
    with pytest.raises(DatasetsInvalid) as caught:
        load_datasets_text(yaml.safe_dump(raw, sort_keys=False), "datasets.yaml")
    return [(p.path, p.message) for p in caught.value.problems]


def tables(raw: Raw) -> Raw:
    found: Raw = raw["datasets"]["shop"]["tables"]
    return found


def test_the_reference_shop_file_loads_and_uses_only_the_policys_categories() -> None:
    file = load_datasets(SHOP_FILE)
    policy = load_policy_file(REFERENCE_POLICY).document

    shop = file.datasets["shop"]
    assert shop.url_env == "PLEDGE_SHOP_DATABASE_URL"
    assert list(shop.tables) == ["customers", "orders", "order_lines", "support_tickets"]
    assert shop.tables["customers"].identities[IdentityKind.EMAIL].column == "email"
    assert shop.tables["orders"].references["customer_id"].table == "customers"
    assert shop.tables["orders"].keep is not None
    assert shop.tables["orders"].columns["shipping_address"].erase is ColumnErasure.MASK
    assert check_against_policy(file, policy.data_categories.keys()) == []


def test_a_category_the_policy_does_not_declare_is_reported_with_its_path() -> None:
    file = load_datasets(SHOP_FILE)

    problems = check_against_policy(file, {"user.contact.email", "user.name"})

    assert problems[0] == (
        f"{TABLES}.customers.columns.phone.category: 'user.contact.phone_number' is not a "
        "data category of the policy"
    )
    assert len(problems) == 8


def test_a_url_written_in_the_file_is_refused(shop_raw: Raw) -> None:
    def write_url(raw: Raw) -> None:
        raw["datasets"]["shop"]["url"] = "postgresql://shop:secret@db/shop"

    assert problems_after(shop_raw, write_url) == [
        (
            "datasets.shop.url",
            "unknown key (see docs/datasets.md for the keys this entry takes)",
        )
    ]


def test_every_problem_is_listed_at_once_with_its_path(shop_raw: Raw) -> None:
    def break_many(raw: Raw) -> None:
        shop = tables(raw)
        shop["orders"]["references"] = {"customer_id": "clients.id"}
        shop["order_lines"]["references"] = {"order_id": "orders.number"}
        shop["customers"]["identities"]["emial"] = "email"
        shop["orders"]["columns"]["shipping_address"] = {"category": "user.contact.address"}
        shop["support_tickets"]["columns"]["body"]["max_length"] = 20

    assert problems_after(shop_raw, break_many) == [
        (
            f"{TABLES}.customers.identities.emial",
            "Input should be 'email', 'phone', 'social' or 'device'",
        ),
        (
            f"{TABLES}.orders.references.customer_id",
            "refers to table 'clients', which this dataset does not declare",
        ),
        (
            f"{TABLES}.orders.columns.shipping_address.erase",
            (
                'required: say how this column is erased ("null", mask or keep), or give the '
                "table erase: delete_row"
            ),
        ),
        (
            f"{TABLES}.order_lines.references.order_id",
            (
                "refers to column 'orders.number', which orders does not declare (its primary "
                "key, or a column named under identities, references or columns)"
            ),
        ),
        (
            f"{TABLES}.support_tickets.columns.body.max_length",
            "only a masked column is cut to a length",
        ),
    ]


def test_problems_carry_the_line_they_are_on() -> None:
    text = SHOP_FILE.read_text().replace("erase: mask, max_length: 64", "erase: hide")

    with pytest.raises(DatasetsInvalid) as caught:
        load_datasets_text(text, "shop.yaml")

    (problem,) = caught.value.problems
    line = next(i for i, ln in enumerate(text.splitlines(), 1) if "erase: hide" in ln)
    assert problem.line == line
    assert str(problem) == (
        f"shop.yaml:{line}: {TABLES}.customers.columns.email.erase: Input should be 'null', "
        "'mask' or 'keep'"
    )


def test_a_bare_null_is_explained(shop_raw: Raw) -> None:
    def bare_null(raw: Raw) -> None:
        tables(raw)["customers"]["columns"]["phone"]["erase"] = None

    assert problems_after(shop_raw, bare_null) == [
        (
            f"{TABLES}.customers.columns.phone",
            'erase: write "null" in quotes (a bare null in YAML means no value at all)',
        )
    ]


def test_references_that_form_a_cycle_are_rejected(shop_raw: Raw) -> None:
    def cycle(raw: Raw) -> None:
        tables(raw)["customers"]["references"] = {"last_order_id": "order_lines.id"}

    assert problems_after(shop_raw, cycle) == [
        (
            f"{TABLES}.customers.references",
            "the references form a cycle: customers → order_lines → orders → customers",
        )
    ]


def test_a_table_that_refers_to_itself_is_a_cycle(shop_raw: Raw) -> None:
    def self_reference(raw: Raw) -> None:
        tables(raw)["customers"]["references"] = {"referred_by": "customers.id"}

    assert problems_after(shop_raw, self_reference) == [
        (
            f"{TABLES}.customers.references",
            "the references form a cycle: customers → customers",
        )
    ]


def test_deleting_rows_that_kept_records_refer_to_is_a_contradiction(shop_raw: Raw) -> None:
    def delete_customers(raw: Raw) -> None:
        tables(raw)["customers"]["erase"] = "delete_row"

    assert problems_after(shop_raw, delete_customers) == [
        (
            f"{TABLES}.customers.erase",
            (
                "customers cannot delete its rows: orders.customer_id refers to them and orders "
                "is kept (Orders are tax records, kept for seven years (26 CFR 1.6001-1))"
            ),
        )
    ]


def test_deleting_rows_that_other_remaining_rows_refer_to_is_refused(shop_raw: Raw) -> None:
    def delete_orders_keep_lines_unkept(raw: Raw) -> None:
        shop = tables(raw)
        del shop["orders"]["keep"]
        shop["orders"]["erase"] = "delete_row"
        del shop["order_lines"]["keep"]

    assert problems_after(shop_raw, delete_orders_keep_lines_unkept) == [
        (
            f"{TABLES}.orders.erase",
            (
                "orders cannot delete its rows: order_lines.order_id refers to them and "
                "order_lines keeps its rows; give order_lines erase: delete_row too, or erase "
                "orders column by column"
            ),
        )
    ]


def test_a_kept_table_cannot_also_delete_its_rows(shop_raw: Raw) -> None:
    def keep_and_delete(raw: Raw) -> None:
        tables(raw)["order_lines"]["erase"] = "delete_row"

    assert problems_after(shop_raw, keep_and_delete) == [
        (
            f"{TABLES}.order_lines.erase",
            "delete_row contradicts keep: kept rows are not deleted",
        )
    ]


def test_a_dataset_needs_a_table_with_identities(shop_raw: Raw) -> None:
    def no_identities(raw: Raw) -> None:
        customers = tables(raw)["customers"]
        del customers["identities"]

    assert problems_after(shop_raw, no_identities) == [
        (TABLES, "no table declares identities: nothing says how to find a person here")
    ]


def test_a_table_no_person_leads_to_is_reported(shop_raw: Raw) -> None:
    def orphan(raw: Raw) -> None:
        tables(raw)["audit_notes"] = {
            "primary_key": "id",
            "columns": {"note": {"category": "user.content.private", "erase": "null"}},
        }

    assert problems_after(shop_raw, orphan) == [
        (
            f"{TABLES}.audit_notes",
            (
                "cannot be reached from a person: it has no identities, and no reference leads "
                "to a table that has"
            ),
        )
    ]


def test_an_identity_column_must_say_how_it_is_erased(shop_raw: Raw) -> None:
    def undeclared_identity(raw: Raw) -> None:
        del tables(raw)["customers"]["columns"]["phone"]

    assert problems_after(shop_raw, undeclared_identity) == [
        (
            f"{TABLES}.customers.identities.phone",
            (
                "column 'phone' holds an identity, so it is personal data: declare it under "
                "columns with its category and how it is erased"
            ),
        )
    ]


def test_only_email_addresses_are_compared_without_case(shop_raw: Raw) -> None:
    def phone_without_case(raw: Raw) -> None:
        tables(raw)["customers"]["identities"]["phone"] = {
            "column": "phone",
            "case_insensitive": True,
        }

    assert problems_after(shop_raw, phone_without_case) == [
        (
            f"{TABLES}.customers.identities.phone.case_insensitive",
            "only e-mail addresses are compared without case",
        )
    ]


def test_keys_and_links_cannot_be_nulled_or_masked(shop_raw: Raw) -> None:
    def erase_keys(raw: Raw) -> None:
        shop = tables(raw)
        shop["customers"]["columns"]["id"] = {"category": "user.name", "erase": "mask"}
        shop["orders"]["columns"]["customer_id"] = {"category": "user.name", "erase": "null"}

    assert problems_after(shop_raw, erase_keys) == [
        (
            f"{TABLES}.customers.columns.id.erase",
            "the primary key identifies the row: it cannot be nulled or masked",
        ),
        (
            f"{TABLES}.orders.columns.customer_id.erase",
            "'customer_id' links the row to customers: it cannot be nulled or masked",
        ),
    ]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("customers", "'customers' is not a reference; write 'table.column'"),
        ("customers.id.x", "'customers.id.x' is not a reference; write 'table.column'"),
    ],
)
def test_a_reference_is_written_table_dot_column(shop_raw: Raw, value: str, message: str) -> None:
    def bad_reference(raw: Raw) -> None:
        tables(raw)["orders"]["references"]["customer_id"] = value

    assert problems_after(shop_raw, bad_reference) == [
        (f"{TABLES}.orders.references.customer_id", message)
    ]


def test_names_must_be_plain_sql_identifiers_and_masks_not_too_short(shop_raw: Raw) -> None:
    def bad_names(raw: Raw) -> None:
        shop = tables(raw)
        shop["orders"]["columns"]["total; DROP TABLE x"] = {
            "category": "user.name",
            "erase": "keep",
        }
        shop["customers"]["columns"]["email"]["max_length"] = 8

    assert problems_after(shop_raw, bad_names) == [
        (
            f"{TABLES}.customers.columns.email.max_length",
            "Input should be greater than or equal to 16",
        ),
        (
            f"{TABLES}.orders.columns.total; DROP TABLE x",
            "not a plain SQL name (letters, digits and _, not starting with a digit)",
        ),
    ]


def test_duplicate_keys_and_files_that_are_not_yaml_are_refused(tmp_path: Path) -> None:
    duplicate = SHOP_FILE.read_text().replace(
        "      orders:\n", "      customers:\n        primary_key: id\n      orders:\n", 1
    )
    with pytest.raises(DatasetsInvalid, match="duplicate key 'customers'"):
        load_datasets_text(duplicate)
    with pytest.raises(DatasetsInvalid, match="not valid YAML"):
        load_datasets_text("datasets: [")
    with pytest.raises(DatasetsInvalid, match="a mapping with a 'datasets' key"):
        load_datasets_text("- shop")
    with pytest.raises(DatasetsInvalid, match="cannot read the file"):
        load_datasets(tmp_path / "missing.yaml")


def test_a_reference_to_a_column_erasure_changes_is_refused(shop_raw: Raw) -> None:
    def refer_to_the_email(raw: Raw) -> None:
        orders = tables(raw)["orders"]
        orders["references"] = {"customer_email": "customers.email"}

    assert problems_after(shop_raw, refer_to_the_email) == [
        (
            f"{TABLES}.orders.references.customer_email",
            (
                "refers to column 'customers.email', which erasure changes (mask): refer to a "
                "column that stays, such as the primary key"
            ),
        )
    ]
