"""Pure rules of connected databases: what a dataset file may say, the order tables are
walked in, and what a masked value is.

No I/O here: the loader, the service and the tests share these decisions.
"""

from __future__ import annotations

import hashlib
import hmac
import string
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

from pledge.datasets.document import ColumnErasure, DatasetFile, Table, TableErasure
from pledge.vault.rules import IdentityInvalid, IdentityKind, normalize_identity

IN_CHUNK = 500
"""Most values one `IN (...)` list carries: every database plans it as index lookups."""
MASK_LENGTH = 64
"""Characters of a full mask: HMAC-SHA256 in hex."""
MIN_MASK_KEY_BYTES = 16
"""Shortest mask key accepted."""

PathKey = tuple[str | int, ...]
T = TypeVar("T")


@dataclass(frozen=True)
class Problem:
    """Something wrong with a dataset file, at `path` (e.g. `datasets.shop.tables.orders`)."""

    path: PathKey
    message: str


def dotted(path: Sequence[str | int]) -> str:
    """`path` written as in the docs: `datasets.shop.tables.orders.columns.total`."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


# --- Checking a dataset file ----------------------------------------------------------------


def dataset_problems(
    name: str, tables: Mapping[str, Table], declared: Collection[str]
) -> list[Problem]:
    """Every problem of dataset `name` whose valid tables are `tables`, among `declared` ones.

    Tables that failed their own validation are in `declared` but not in `tables`: a
    reference to them is not reported as dangling, and whole-dataset checks (reachability,
    at least one identity) wait until every table is valid.
    """
    base: PathKey = ("datasets", name, "tables")
    problems: list[Problem] = []
    for table_name, table in tables.items():
        problems.extend(_table_problems((*base, table_name), table))
        problems.extend(_reference_problems((*base, table_name), table, tables, declared))
    problems.extend(_deletion_problems(base, tables))
    cycles = _cycles(tables)
    for cycle in cycles:
        problems.append(
            Problem(
                (*base, cycle[0], "references"),
                f"the references form a cycle: {' → '.join(cycle)}",
            )
        )
    if set(tables) == set(declared):
        in_cycles = {table for cycle in cycles for table in cycle}
        if not any(table.identities for table in tables.values()):
            problems.append(
                Problem(
                    base,
                    "no table declares identities: nothing says how to find a person here",
                )
            )
        else:
            reached = _reachable(tables)
            for table_name in tables:
                if table_name not in reached and table_name not in in_cycles:
                    problems.append(
                        Problem(
                            (*base, table_name),
                            "cannot be reached from a person: it has no identities, and no "
                            "reference leads to a table that has",
                        )
                    )
    return problems


def _table_problems(path: PathKey, table: Table) -> Iterator[Problem]:
    deletes = table.erase is TableErasure.DELETE_ROW
    if deletes and table.keep is not None:
        yield Problem((*path, "erase"), "delete_row contradicts keep: kept rows are not deleted")
    for kind, identity in table.identities.items():
        if identity.column not in table.columns:
            yield Problem(
                (*path, "identities", kind.value),
                f"column '{identity.column}' holds an identity, so it is personal data: "
                "declare it under columns with its category and how it is erased",
            )
        if identity.case_insensitive and kind is not IdentityKind.EMAIL:
            yield Problem(
                (*path, "identities", kind.value, "case_insensitive"),
                "only e-mail addresses are compared without case",
            )
    for column_name, column in table.columns.items():
        where = (*path, "columns", column_name)
        if column.erase is None and not deletes:
            yield Problem(
                (*where, "erase"),
                'required: say how this column is erased ("null", mask or keep), or give '
                "the table erase: delete_row",
            )
        if column.max_length is not None and column.erase is not ColumnErasure.MASK:
            yield Problem((*where, "max_length"), "only a masked column is cut to a length")
        if column.erase in (ColumnErasure.NULL, ColumnErasure.MASK):
            if column_name == table.primary_key:
                yield Problem(
                    (*where, "erase"),
                    "the primary key identifies the row: it cannot be nulled or masked",
                )
            elif column_name in table.references:
                yield Problem(
                    (*where, "erase"),
                    f"'{column_name}' links the row to {table.references[column_name].table}: "
                    "it cannot be nulled or masked",
                )


def _reference_problems(
    path: PathKey, table: Table, tables: Mapping[str, Table], declared: Collection[str]
) -> Iterator[Problem]:
    for column_name, reference in table.references.items():
        where = (*path, "references", column_name)
        if reference.table not in declared:
            yield Problem(
                where, f"refers to table '{reference.table}', which this dataset does not declare"
            )
        elif reference.table in tables:
            target = tables[reference.table]
            if reference.column not in _declared_columns(target):
                yield Problem(
                    where,
                    f"refers to column '{reference}', which {reference.table} does not declare "
                    "(its primary key, or a column named under identities, references or columns)",
                )
            elif (
                reference.column != target.primary_key  # reported on the key itself
                and (erased := target.columns.get(reference.column)) is not None
                and erased.erase in {ColumnErasure.NULL, ColumnErasure.MASK}
            ):
                # Erasing the parent would change the value this row is found by: the row
                # could no longer be reached (and a real foreign key would refuse the change).
                yield Problem(
                    where,
                    f"refers to column '{reference}', which erasure changes "
                    f"({erased.erase.value}): refer to a column that stays, such as the "
                    "primary key",
                )


def _declared_columns(table: Table) -> set[str]:
    return {table.primary_key, *table.lookup_columns(), *table.columns}


def _deletion_problems(base: PathKey, tables: Mapping[str, Table]) -> Iterator[Problem]:
    """A table whose rows are deleted must not be referred to by rows that stay."""
    for child_name, child in tables.items():
        if child.erase is TableErasure.DELETE_ROW and child.keep is None:
            continue
        for column_name, reference in child.references.items():
            parent = tables.get(reference.table)
            if parent is None or parent.erase is not TableErasure.DELETE_ROW:
                continue
            if child.keep is not None:
                why = f"{child_name} is kept ({child.keep.reason.rstrip('.')})"
            else:
                why = (
                    f"{child_name} keeps its rows; give {child_name} erase: delete_row too, "
                    f"or erase {reference.table} column by column"
                )
            yield Problem(
                (*base, reference.table, "erase"),
                f"{reference.table} cannot delete its rows: {child_name}.{column_name} refers "
                f"to them and {why}",
            )


def _parents(table: Table, tables: Mapping[str, Table]) -> list[str]:
    return list(dict.fromkeys(r.table for r in table.references.values() if r.table in tables))


def _cycles(tables: Mapping[str, Table]) -> list[list[str]]:
    """Each cycle of references once, as [a, b, ..., a], starting at its first declared table."""
    found: list[list[str]] = []
    seen: set[frozenset[str]] = set()
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(name: str, path: list[str]) -> None:
        # `path` is the chain of tables, each referring to the next, that led to `name`.
        state[name] = 1
        for parent in _parents(tables[name], tables):
            if state.get(parent) == 1:
                members = [*path[path.index(parent) :], name] if parent != name else [name]
                if frozenset(members) not in seen:
                    seen.add(frozenset(members))
                    at = members.index(min(members, key=list(tables).index))
                    rotated = members[at:] + members[:at]
                    found.append([*rotated, rotated[0]])
            elif parent not in state:
                visit(parent, [*path, name])
        state[name] = 2

    for name in tables:
        if name not in state:
            visit(name, [])
    return found


def _reachable(tables: Mapping[str, Table]) -> set[str]:
    reached = {name for name, table in tables.items() if table.identities}
    grew = True
    while grew:
        grew = False
        for name, table in tables.items():
            if name not in reached and any(p in reached for p in _parents(table, tables)):
                reached.add(name)
                grew = True
    return reached


def check_against_policy(file: DatasetFile, category_keys: Collection[str]) -> list[str]:
    """Every column whose category the policy does not declare, as `path: message` lines."""
    known = set(category_keys)
    problems = []
    for dataset_name, dataset in file.datasets.items():
        for table_name, table in dataset.tables.items():
            for column_name, column in table.columns.items():
                if column.category not in known:
                    path = dotted(
                        ("datasets", dataset_name, "tables", table_name, "columns", column_name)
                    )
                    problems.append(
                        f"{path}.category: '{column.category}' is not a data category of the policy"
                    )
    return problems


# --- Walking the tables ---------------------------------------------------------------------


def access_order(tables: Mapping[str, Table]) -> list[str]:
    """Parents before children (customers, orders, order lines), in declaration order
    otherwise: the order a person's rows are found in."""
    order: list[str] = []
    placed: set[str] = set()
    remaining = list(tables)
    while remaining:
        ready = [
            name
            for name in remaining
            if all(p in placed or p == name for p in _parents(tables[name], tables))
        ]
        if not ready:
            raise ValueError(f"the references of {', '.join(remaining)} form a cycle")
        order.extend(ready)
        placed.update(ready)
        remaining = [name for name in remaining if name not in placed]
    return order


def erasure_order(tables: Mapping[str, Table]) -> list[str]:
    """Children before parents: no row is deleted while another still refers to it."""
    return access_order(tables)[::-1]


def referenced_columns(tables: Mapping[str, Table]) -> dict[str, list[str]]:
    """For each table, the columns other tables refer to (read to find their rows)."""
    needed: dict[str, list[str]] = {name: [] for name in tables}
    for table in tables.values():
        for reference in table.references.values():
            if reference.table in needed and reference.column not in needed[reference.table]:
                needed[reference.table].append(reference.column)
    return needed


def chunks(values: Iterable[T], size: int = IN_CHUNK) -> Iterator[list[T]]:
    """`values` in lists of at most `size`, for `IN (...)` lookups."""
    chunk: list[T] = []
    for value in values:
        chunk.append(value)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


# --- Identities and values ------------------------------------------------------------------


IdentityValues = str | Sequence[str]
"""One identity value, or several of the same kind (a person's two phone numbers)."""
Identities = Mapping[str, IdentityValues] | Mapping[IdentityKind, IdentityValues]
"""A person's identities by kind (`"email"` or `IdentityKind.EMAIL`)."""


def normalized_identities(identities: Identities) -> dict[IdentityKind, list[str]]:
    """The identities in canonical form, each kind's values once; raises `IdentityInvalid`
    (a ValueError) for an unknown kind or a value that is not one."""
    known = {kind.value: kind for kind in IdentityKind}
    canonical: dict[IdentityKind, list[str]] = {}
    for name, given in identities.items():
        kind = known.get(str(name))
        if kind is None:
            raise IdentityInvalid(f"'{name}' is not a kind of identity (known: {', '.join(known)})")
        values = [given] if isinstance(given, str) else list(given)
        canonical[kind] = list(dict.fromkeys(normalize_identity(kind, v) for v in values))
    return canonical


def stored_correction(table: Table, column: str, new_value: str) -> str:
    """What a correction writes into `column`: identities in their canonical form (so the
    person is still found by them), other values as given."""
    for kind, identity in table.identities.items():
        if identity.column == column and not identity.case_insensitive:
            return normalize_identity(kind, new_value)
    return new_value


def mask_length(max_length: int | None) -> int:
    """How many characters a mask has in a column of `max_length` (None: unbounded)."""
    return MASK_LENGTH if max_length is None else min(MASK_LENGTH, max_length)


def mask_value(key: bytes, value: str, max_length: int | None = None) -> str:
    """The mask of `value`: HMAC-SHA256 under `key`, in hex, cut to `max_length`.

    Equal values mask equally (so masked rows still group), and without the key a mask
    tells nothing about the value.
    """
    digest = hmac.new(key, value.encode("utf-8"), hashlib.sha256).hexdigest()
    return digest[: mask_length(max_length)]


def looks_masked(value: str, max_length: int | None = None) -> bool:
    """Whether `value` already has the form of a mask, so erasing again leaves it as it is."""
    return len(value) == mask_length(max_length) and set(value) <= set(string.hexdigits.lower())
