"""Connected databases: find, show, erase and correct a person's rows in external tables.

Each lookup is an equality or an `IN (...)` list on a column the dataset file names (an
identity, a reference or a primary key), so an index serves every one of them; each erasure
or correction runs in one transaction per database. Personal values are never logged: only
dataset and table names and counts.
"""

from __future__ import annotations

import logging
import os
import threading
import warnings
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, NamedTuple, Self

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, SAWarning, SQLAlchemyError

from pledge.datasets.document import ColumnErasure, Dataset, DatasetFile, Table, TableErasure
from pledge.datasets.rules import (
    MIN_MASK_KEY_BYTES,
    Identities,
    access_order,
    chunks,
    erasure_order,
    looks_masked,
    mask_value,
    normalized_identities,
    referenced_columns,
    stored_correction,
)
from pledge.vault.rules import IdentityKind

log = logging.getLogger(__name__)

Rows = dict[Any, dict[str, Any]]
"""Rows found in one table: primary key -> the values of the columns other tables refer to."""


class DatasetUnavailable(RuntimeError):
    """A connected database that cannot be used: its URL is not set or not a URL."""

    def __init__(self, dataset: str, reason: str) -> None:
        self.dataset, self.reason = dataset, reason
        super().__init__(f"dataset '{dataset}': {reason}")


class UnknownCategory(ValueError):
    """A correction for a category that no connected table declares."""


@dataclass(frozen=True)
class Located:
    """The primary keys of a person's rows: dataset -> table -> keys, parents first."""

    rows: Mapping[str, Mapping[str, tuple[Any, ...]]]

    def keys(self, dataset: str, table: str) -> tuple[Any, ...]:
        """The primary keys found in one table (empty when none)."""
        return tuple(self.rows.get(dataset, {}).get(table, ()))

    @property
    def total(self) -> int:
        """How many rows were found in all."""
        return sum(len(keys) for tables in self.rows.values() for keys in tables.values())


class ConnectedValue(NamedTuple):
    """One personal value of a connected row, with its data category."""

    category: str
    value: str | None


@dataclass(frozen=True)
class ConnectedRecord:
    """One row of a connected table, with its declared personal columns only."""

    dataset: str
    table: str
    key: str
    """The row's primary key, as text."""
    values: Mapping[str, ConnectedValue]
    """Column -> (category, value as text or None), in the order the file declares them."""


@dataclass(frozen=True)
class ErasedTable:
    """What an erasure did to one table (or would do, in a dry run)."""

    dataset: str
    table: str
    rows_found: int = 0
    rows_deleted: int = 0
    values_nulled: int = 0
    values_masked: int = 0
    rows_retained: int = 0
    categories: frozenset[str] = frozenset()
    """The data categories of the table's personal columns, when rows were found."""


@dataclass(frozen=True)
class Retained:
    """Rows an erasure kept because the law requires it, and why."""

    dataset: str
    table: str
    reason: str
    rows: int


@dataclass(frozen=True)
class CorrectionReport:
    """The answer to a correction: values changed, and the person's rows in tables kept by
    law, which a correction does not rewrite, with their reason."""

    changed: int
    unchanged_records: tuple[Retained, ...] = ()


@dataclass(frozen=True)
class ErasureReport:
    """The answer to an erasure: counts per table, in the order tables were erased, and the
    records kept with their reason."""

    tables: tuple[ErasedTable, ...]
    retained: tuple[Retained, ...]
    dry_run: bool = False

    def table(self, dataset: str, table: str) -> ErasedTable:
        """The counts of one table."""
        for count in self.tables:
            if (count.dataset, count.table) == (dataset, table):
                return count
        raise KeyError(f"{dataset}.{table}")

    @property
    def changed(self) -> int:
        """Rows deleted plus values nulled or masked: zero when there was nothing to erase."""
        return sum(t.rows_deleted + t.values_nulled + t.values_masked for t in self.tables)

    def counts(self) -> dict[str, dict[str, int]]:
        """`dataset.table` -> its counts, for the tables where the person had rows (an empty
        mapping when there were none), ready for a JSON record of the request."""
        return {
            f"{t.dataset}.{t.table}": {
                "rows_found": t.rows_found,
                "rows_deleted": t.rows_deleted,
                "values_nulled": t.values_nulled,
                "values_masked": t.values_masked,
                "rows_retained": t.rows_retained,
            }
            for t in self.tables
            if t.rows_found
        }

    def categories(self) -> set[str]:
        """The data categories the person had in connected databases (to tell recipients)."""
        return {category for t in self.tables for category in t.categories}


@dataclass
class _Dataset:
    """A declared dataset with its SQL table objects, built once."""

    declaration: Dataset
    tables: dict[str, sa.TableClause] = field(default_factory=dict)
    needed: dict[str, list[str]] = field(default_factory=dict)


class ConnectedDatabases:
    """The databases a dataset file declares; engines are created on first use."""

    def __init__(
        self,
        file: DatasetFile,
        *,
        mask_key: bytes,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        if len(mask_key) < MIN_MASK_KEY_BYTES:
            raise ValueError(f"the mask key must have at least {MIN_MASK_KEY_BYTES} bytes")
        self.file = file
        self._mask_key = mask_key
        self._environ = os.environ if environ is None else environ
        self._engines: dict[str, Engine] = {}
        self._lock = threading.Lock()
        self._datasets = {name: _describe(dataset) for name, dataset in file.datasets.items()}

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close every connection pool opened so far."""
        with self._lock:
            engines, self._engines = list(self._engines.values()), {}
        for engine in engines:
            engine.dispose()

    # --- Reading ----------------------------------------------------------------------------

    def check(self) -> list[str]:
        """Every reason the declared tables cannot be used as declared: a URL not set, a
        database not reached, a missing table or column, a masked column that holds no text,
        a lookup column without an index. Empty when all is well."""
        problems: list[str] = []
        for name, dataset in self.file.datasets.items():
            where = f"datasets.{name}"
            if not self._environ.get(dataset.url_env):
                problems.append(
                    f"{where}: the environment variable {dataset.url_env} (the database URL) "
                    "is not set"
                )
                continue
            try:
                engine = self._engine(name)
                with engine.connect() as connection:
                    inspector = sa.inspect(connection)
                    for table_name, table in dataset.tables.items():
                        problems.extend(
                            _schema_problems(
                                f"{where}.tables.{table_name}", inspector, table_name, table
                            )
                        )
            except DatasetUnavailable as unavailable:
                problems.append(f"{where}: {unavailable.reason}")
            except SQLAlchemyError as error:
                reason = str(getattr(error, "orig", None) or type(error).__name__)
                problems.append(f"{where}: cannot read the database: {reason.splitlines()[0]}")
        return problems

    def find(self, identities: Identities) -> Located:
        """The primary keys of every row reachable from the person's identities: rows that
        hold an identity, then the rows that refer to them, and so on down."""
        canonical = normalized_identities(identities)
        rows: dict[str, dict[str, tuple[Any, ...]]] = {}
        for name in self._datasets:
            with self._engine(name).connect() as connection:
                found = self._locate(connection, name, canonical)
            rows[name] = {table: tuple(keys) for table, keys in found.items()}
        return Located(rows)

    def access(self, identities: Identities) -> list[ConnectedRecord]:
        """The person's rows with the values of their declared personal columns, parents
        first, by primary key within a table."""
        canonical = normalized_identities(identities)
        records: list[ConnectedRecord] = []
        for name, described in self._datasets.items():
            with self._engine(name).connect() as connection:
                found = self._locate(connection, name, canonical)
                for table_name in access_order(described.declaration.tables):
                    records.extend(
                        self._records(connection, name, table_name, _sorted(found[table_name]))
                    )
        log.info("access: %d connected records", len(records))
        return records

    # --- Writing ----------------------------------------------------------------------------

    def erase(self, identities: Identities, *, dry_run: bool = False) -> ErasureReport:
        """Erase the person's rows: children before parents, one transaction per database.

        Tables with `erase: delete_row` lose the rows; other tables keep them with their
        personal columns nulled or masked as declared; tables with `keep` are listed in
        `retained` with their reason. A dry run counts the same and changes nothing.
        """
        canonical = normalized_identities(identities)
        counts: list[ErasedTable] = []
        retained: list[Retained] = []
        for name, described in self._datasets.items():
            with self._transaction(name, commit=not dry_run) as connection:
                found = self._locate(connection, name, canonical)
                for table_name in erasure_order(described.declaration.tables):
                    count = self._erase_table(connection, name, table_name, found[table_name])
                    counts.append(count)
                    keep = described.declaration.tables[table_name].keep
                    if keep is not None and count.rows_retained:
                        retained.append(
                            Retained(name, table_name, keep.reason, count.rows_retained)
                        )
            for count in counts:
                if count.dataset == name and count.rows_found:
                    log.info(
                        "%s %s.%s: %d rows deleted, %d values nulled, %d masked, %d kept",
                        "would erase in" if dry_run else "erased in",
                        name,
                        count.table,
                        count.rows_deleted,
                        count.values_nulled,
                        count.values_masked,
                        count.rows_retained,
                    )
        return ErasureReport(tuple(counts), tuple(retained), dry_run)

    def declares(self, category: str) -> bool:
        """Whether any connected table declares a column of `category`."""
        return any(
            column.category == category
            for described in self._datasets.values()
            for table in described.declaration.tables.values()
            for column in table.columns.values()
        )

    def correct(self, identities: Identities, category: str, new_value: str) -> CorrectionReport:
        """Write `new_value` into every declared column of `category` in the person's rows,
        one transaction per database, except in tables kept by law (`keep`): those rows are
        records of what happened (where an order was shipped), and a correction leaves them as
        they were, but for their identity columns (the person is still found by the corrected
        address); the report names them with their reason."""
        canonical = normalized_identities(identities)
        if not self.declares(category):
            raise UnknownCategory(f"no connected table declares a column of '{category}'")
        changed = 0
        records: list[Retained] = []
        for name, described in self._datasets.items():
            in_dataset = 0
            with self._transaction(name, commit=True) as connection:
                found = self._locate(connection, name, canonical)
                for table_name, table in described.declaration.tables.items():
                    sql = described.tables[table_name]
                    key = sql.c[table.primary_key]
                    holds = any(c.category == category for c in table.columns.values())
                    if not holds or not found[table_name]:
                        continue
                    identity_columns = {ident.column for ident in table.identities.values()}
                    if table.keep is not None and any(
                        c.category == category and n not in identity_columns
                        for n, c in table.columns.items()
                    ):
                        records.append(
                            Retained(name, table_name, table.keep.reason, len(found[table_name]))
                        )
                    for column_name, column in table.columns.items():
                        if column.category != category:
                            continue
                        if table.keep is not None and column_name not in identity_columns:
                            continue  # a record of what happened, kept as it was
                        value = stored_correction(table, column_name, new_value)
                        target = sql.c[column_name]
                        for chunk in chunks(_sorted(found[table_name])):
                            result = connection.execute(
                                sa.update(sql)
                                .where(key.in_(chunk), sa.or_(target.is_(None), target != value))
                                .values({column_name: value})
                            )
                            in_dataset += result.rowcount
            log.info("corrected %d values of %s in %s", in_dataset, category, name)
            changed += in_dataset
        return CorrectionReport(changed, tuple(records))

    # --- Inside ------------------------------------------------------------------------------

    def _engine(self, name: str) -> Engine:
        with self._lock:
            engine = self._engines.get(name)
            if engine is None:
                variable = self.file.datasets[name].url_env
                url = self._environ.get(variable)
                if not url:
                    raise DatasetUnavailable(
                        name, f"the environment variable {variable} is not set"
                    )
                try:
                    engine = sa.create_engine(url, pool_pre_ping=True)
                except NoSuchModuleError as error:
                    raise DatasetUnavailable(
                        name, f"{variable} names an unknown database ({error})"
                    ) from None
                except ArgumentError:
                    # The message would repeat the URL, password included.
                    raise DatasetUnavailable(name, f"{variable} is not a SQLAlchemy URL") from None
                except ImportError as error:
                    raise DatasetUnavailable(
                        name,
                        f"the driver '{error.name}' is not installed "
                        "(install pledge[postgresql] or pledge[mysql])",
                    ) from None
                self._engines[name] = engine
            return engine

    @contextmanager
    def _transaction(self, name: str, *, commit: bool) -> Iterator[Connection]:
        with self._engine(name).connect() as connection:
            transaction = connection.begin()
            try:
                yield connection
            except BaseException:
                transaction.rollback()
                raise
            if commit:
                transaction.commit()
            else:
                transaction.rollback()

    def _locate(
        self, connection: Connection, name: str, identities: Mapping[IdentityKind, list[str]]
    ) -> dict[str, Rows]:
        """The person's rows in each table of dataset `name`, found parents first."""
        described = self._datasets[name]
        found: dict[str, Rows] = {}
        for table_name in access_order(described.declaration.tables):
            table = described.declaration.tables[table_name]
            sql = described.tables[table_name]
            wanted = [table.primary_key, *described.needed[table_name]]
            select = sa.select(*(sql.c[column] for column in dict.fromkeys(wanted)))
            rows: Rows = {}
            for kind, identity in table.identities.items():
                if kind not in identities:
                    continue
                column = sql.c[identity.column]
                compared = sa.func.lower(column) if identity.case_insensitive else column
                for value in identities[kind]:
                    _collect(connection, select.where(compared == value), table, rows)
            for column_name, reference in table.references.items():
                parents = found.get(reference.table, {})
                values = dict.fromkeys(
                    row[reference.column]
                    for row in parents.values()
                    if row[reference.column] is not None
                )
                for chunk in chunks(_sorted(values)):
                    _collect(connection, select.where(sql.c[column_name].in_(chunk)), table, rows)
            found[table_name] = rows
        return found

    def _records(
        self, connection: Connection, name: str, table_name: str, keys: list[Any]
    ) -> Iterable[ConnectedRecord]:
        described = self._datasets[name]
        table = described.declaration.tables[table_name]
        if not table.columns or not keys:
            return
        sql = described.tables[table_name]
        key = sql.c[table.primary_key]
        columns = list(table.columns)
        for chunk in chunks(keys):
            statement = (
                sa.select(key, *(sql.c[c] for c in columns)).where(key.in_(chunk)).order_by(key)
            )
            for row in connection.execute(statement):
                yield ConnectedRecord(
                    dataset=name,
                    table=table_name,
                    key=str(row[0]),
                    values={
                        column: ConnectedValue(
                            table.columns[column].category,
                            None if value is None else str(value),
                        )
                        for column, value in zip(columns, row[1:], strict=True)
                    },
                )

    def _erase_table(
        self, connection: Connection, name: str, table_name: str, rows: Rows
    ) -> ErasedTable:
        described = self._datasets[name]
        table = described.declaration.tables[table_name]
        sql = described.tables[table_name]
        key = sql.c[table.primary_key]
        keys = _sorted(rows)
        if not keys:
            return ErasedTable(name, table_name)
        categories = frozenset(column.category for column in table.columns.values())
        if table.erase is TableErasure.DELETE_ROW:
            deleted = sum(
                connection.execute(sa.delete(sql).where(key.in_(chunk))).rowcount
                for chunk in chunks(keys)
            )
            return ErasedTable(
                name, table_name, len(keys), rows_deleted=deleted, categories=categories
            )
        nulled = masked = 0
        erased = {
            column_name: column
            for column_name, column in table.columns.items()
            if column.erase in (ColumnErasure.NULL, ColumnErasure.MASK)
        }
        if erased:
            names = list(erased)
            for chunk in chunks(keys):
                statement = sa.select(key, *(sql.c[c] for c in names)).where(key.in_(chunk))
                changes: dict[tuple[str, ...], list[dict[str, Any]]] = {}
                for row in connection.execute(statement):
                    new: dict[str, Any] = {}
                    for column_name, old in zip(names, row[1:], strict=True):
                        column = erased[column_name]
                        if old is None:
                            continue
                        if column.erase is ColumnErasure.NULL:
                            new[column_name] = None
                            nulled += 1
                        elif not looks_masked(str(old), column.max_length):
                            new[column_name] = mask_value(
                                self._mask_key, str(old), column.max_length
                            )
                            masked += 1
                    if new:
                        changes.setdefault(tuple(sorted(new)), []).append(
                            {"pledge_key": row[0], **_bind_names(new)}
                        )
                for changed_columns, parameters in changes.items():
                    statement_update = (
                        sa.update(sql)
                        .where(key == sa.bindparam("pledge_key"))
                        .values(
                            {
                                column: sa.bindparam(f"pledge_new_{column}")
                                for column in changed_columns
                            }
                        )
                    )
                    connection.execute(statement_update, parameters)
        return ErasedTable(
            name,
            table_name,
            len(keys),
            values_nulled=nulled,
            values_masked=masked,
            rows_retained=len(keys) if table.keep is not None else 0,
            categories=categories,
        )


def _describe(dataset: Dataset) -> _Dataset:
    needed = referenced_columns(dataset.tables)
    described = _Dataset(dataset, needed=needed)
    for name, table in dataset.tables.items():
        columns = dict.fromkeys(
            [
                table.primary_key,
                *(identity.column for identity in table.identities.values()),
                *table.references,
                *needed[name],
                *table.columns,
            ]
        )
        described.tables[name] = sa.table(name, *(sa.column(c) for c in columns))
    return described


def _collect(connection: Connection, statement: sa.Select[Any], table: Table, rows: Rows) -> None:
    for row in connection.execute(statement).mappings():
        rows[row[table.primary_key]] = dict(row)


def _bind_names(values: Mapping[str, Any]) -> dict[str, Any]:
    return {f"pledge_new_{column}": value for column, value in values.items()}


def _sorted(values: Iterable[Any]) -> list[Any]:
    """Keys in order (so chunks and answers are stable), as found when they do not compare."""
    listed = list(values)
    try:
        return sorted(listed)
    except TypeError:
        return listed


def _schema_problems(where: str, inspector: sa.Inspector, name: str, table: Table) -> list[str]:
    if not inspector.has_table(name):
        return [f"{where}: the table does not exist"]
    types = {column["name"]: column["type"] for column in inspector.get_columns(name)}
    declared = dict.fromkeys(
        [
            table.primary_key,
            *(identity.column for identity in table.identities.values()),
            *table.references,
            *table.columns,
        ]
    )
    problems = [f"{where}: column '{c}' does not exist" for c in declared if c not in types]
    for column_name, column in table.columns.items():
        if (
            column.erase is ColumnErasure.MASK
            and column_name in types
            and not isinstance(types[column_name], sa.String)
        ):
            problems.append(
                f"{where}.columns.{column_name}: masked, but the column does not hold text"
            )
    indexed, expressions, unknown = _index_heads(inspector, name)
    lookups = [(column, False) for column in table.references] + [
        (identity.column, identity.case_insensitive) for identity in table.identities.values()
    ]
    for column_name, case_insensitive in lookups:
        if column_name not in types:
            continue
        if case_insensitive:
            served = unknown or any("lower(" in e.lower() and column_name in e for e in expressions)
            advice = f"CREATE INDEX ... ON {name} (lower({column_name}))"
        else:
            served = column_name in indexed
            advice = f"CREATE INDEX ... ON {name} ({column_name})"
        if not served:
            problems.append(
                f"{where}: no index serves lookups by '{column_name}', so each would read the "
                f"whole table ({advice})"
            )
    return problems


def _index_heads(inspector: sa.Inspector, name: str) -> tuple[set[str], list[str], bool]:
    """The first column of each index of table `name`, the first expression of each
    expression index, and whether some expression index could not be read (SQLite)."""
    heads: set[str] = set(inspector.get_pk_constraint(name).get("constrained_columns", [])[:1])
    expressions: list[str] = []
    # SQLite's reflection skips expression indexes with a warning: note it, do not fail.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", SAWarning)
        indexes = inspector.get_indexes(name)
        uniques = inspector.get_unique_constraints(name)
    unknown = any("expression-based index" in str(w.message) for w in caught)
    for index in indexes:
        first = index["column_names"][0] if index["column_names"] else None
        if first is not None:
            heads.add(first)
        elif index.get("expressions"):
            expressions.append(str(index["expressions"][0]))
    for unique in uniques:
        heads.update(unique["column_names"][:1])
    return heads, expressions, unknown
