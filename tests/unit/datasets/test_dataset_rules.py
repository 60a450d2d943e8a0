"""The pure rules of connected databases: table order, masks, chunks, identities."""

from __future__ import annotations

import hashlib
import hmac

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pledge.datasets import Table
from pledge.datasets.rules import (
    IN_CHUNK,
    access_order,
    chunks,
    erasure_order,
    looks_masked,
    mask_value,
    normalized_identities,
    referenced_columns,
)
from pledge.vault import IdentityKind
from pledge.vault.rules import IdentityInvalid

KEY = b"a-mask-key-of-32-bytes-----------"


def shop_tables() -> dict[str, Table]:
    def table(**references: str) -> Table:
        return Table.model_validate({"primary_key": "id", "references": references})

    return {
        "order_lines": table(order_id="orders.id"),
        "orders": table(customer_id="customers.id"),
        "customers": Table.model_validate({"primary_key": "id", "identities": {"email": "email"}}),
        "support_tickets": table(customer_id="customers.id"),
    }


def test_a_persons_rows_are_found_parents_first_and_erased_children_first() -> None:
    tables = shop_tables()

    assert access_order(tables) == ["customers", "orders", "support_tickets", "order_lines"]
    assert erasure_order(tables) == ["order_lines", "support_tickets", "orders", "customers"]


def test_the_columns_children_refer_to_are_read_with_each_parent_row() -> None:
    assert referenced_columns(shop_tables()) == {
        "order_lines": [],
        "orders": ["id"],
        "customers": ["id"],
        "support_tickets": [],
    }


@given(
    st.lists(st.lists(st.integers(min_value=0, max_value=11), max_size=3), min_size=1, max_size=12)
)
def test_every_table_comes_after_the_tables_it_refers_to(parents: list[list[int]]) -> None:
    # Table i may refer only to tables declared before it (j < i): any such graph is acyclic,
    # and the tables are declared here in reverse to make the order do some work.
    tables = {
        f"t{i}": Table.model_validate(
            {
                "primary_key": "id",
                "references": {f"r{j}": f"t{j}.id" for j in refs if j < i},
            }
        )
        for i, refs in reversed(list(enumerate(parents)))
    }

    order = access_order(tables)

    assert sorted(order) == sorted(tables)
    for name, table in tables.items():
        for reference in table.references.values():
            assert order.index(reference.table) < order.index(name)
    assert erasure_order(tables) == order[::-1]


def test_a_mask_is_the_hmac_sha256_of_the_value_in_hex_cut_to_the_column() -> None:
    full = hmac.new(KEY, b"alice@example.com", hashlib.sha256).hexdigest()

    assert mask_value(KEY, "alice@example.com") == full
    assert mask_value(KEY, "alice@example.com", 20) == full[:20]
    assert mask_value(KEY, "alice@example.com", 500) == full
    assert mask_value(b"another-key-of-some-length", "alice@example.com") != full


@given(st.text(max_size=200), st.one_of(st.none(), st.integers(min_value=16, max_value=100)))
def test_a_masked_value_looks_masked_so_it_is_not_masked_twice(
    value: str, max_length: int | None
) -> None:
    assert looks_masked(mask_value(KEY, value, max_length), max_length)


def test_ordinary_values_do_not_look_masked() -> None:
    assert not looks_masked("1 Elm St")
    assert not looks_masked("alice@example.com", 17)
    assert not looks_masked("A" * 64)


def test_in_lists_carry_at_most_the_chunk_size() -> None:
    sizes = [len(chunk) for chunk in chunks(range(1201))]

    assert sizes == [IN_CHUNK, IN_CHUNK, 201]
    assert list(chunks([])) == []


def test_identities_are_put_in_canonical_form_one_or_several_per_kind() -> None:
    assert normalized_identities(
        {"email": " Alice@Example.COM", IdentityKind.PHONE: ["(415) 555-0101", "+14155550101"]}
    ) == {IdentityKind.EMAIL: ["alice@example.com"], IdentityKind.PHONE: ["+14155550101"]}


def test_an_unknown_kind_of_identity_or_a_bad_value_is_refused() -> None:
    with pytest.raises(IdentityInvalid, match="'passport' is not a kind of identity"):
        normalized_identities({"passport": "X123"})
    with pytest.raises(IdentityInvalid, match="not an e-mail address"):
        normalized_identities({"email": "alice"})
