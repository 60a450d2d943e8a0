"""The dataset file's shape: connected databases, their tables, and how each column is erased.

Pydantic checks each entry on its own here; what ties entries together (references point to
declared tables, no cycles, no row deleted under a kept one) is checked in `rules.py`.
"""

from __future__ import annotations

import enum
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StrictStr,
    model_validator,
)

from pledge.vault.rules import IdentityKind

SQL_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]{0,62}$"
"""Table and column names: plain SQL identifiers that fit every database (63 characters)."""
CATEGORY_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$"
"""Data category keys, written as in the policy (fideslang's FidesKey form)."""
MIN_MASK_LENGTH = 16
"""Shortest mask a column may be cut to: 64 bits of the HMAC, so masks stay distinct."""

SqlName = Annotated[StrictStr, Field(pattern=SQL_NAME_PATTERN)]
CategoryKey = Annotated[StrictStr, Field(pattern=CATEGORY_PATTERN, max_length=200)]
EnvironmentVariable = Annotated[StrictStr, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")]
Text = Annotated[StrictStr, Field(min_length=1, max_length=4000)]


class Strict(BaseModel):
    """Every entry refuses keys it does not know and cannot be changed once loaded."""

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


class ColumnErasure(enum.StrEnum):
    """What erasing a person does to one column of a row that stays."""

    NULL = "null"
    """The value becomes NULL."""
    MASK = "mask"
    """The value becomes the HMAC-SHA256 of itself (hex), under Pledge's mask key."""
    KEEP = "keep"
    """The value stays (a total on a tax record)."""


class TableErasure(enum.StrEnum):
    """What erasing a person does to the rows of a table, column strategies aside."""

    DELETE_ROW = "delete_row"
    """The person's rows are deleted."""


class PersonalColumn(Strict):
    """A column holding personal data: its data category and how it is erased."""

    category: CategoryKey
    erase: ColumnErasure | None = None
    """Required unless the table deletes its rows."""
    max_length: StrictInt | None = Field(default=None, ge=MIN_MASK_LENGTH)
    """With `erase: mask`: the column's width, to which the 64-character mask is cut."""

    @model_validator(mode="before")
    @classmethod
    def _bare_null(cls, value: Any) -> Any:
        if isinstance(value, dict) and "erase" in value and value["erase"] is None:
            raise ValueError(
                'erase: write "null" in quotes (a bare null in YAML means no value at all)'
            )
        return value


class IdentityColumn(Strict):
    """The column that holds one kind of identity, written `kind: column` or in full."""

    column: SqlName
    case_insensitive: StrictBool = False
    """The column holds e-mail addresses as entered, in any case: compare `lower(column)`
    (which needs an expression index on `lower(column)` to be fast)."""

    @model_validator(mode="before")
    @classmethod
    def _short_form(cls, value: Any) -> Any:
        return {"column": value} if isinstance(value, str) else value


class Reference(Strict):
    """A column's values are the values of `table.column` (usually that table's primary key)."""

    table: SqlName
    column: SqlName

    @model_validator(mode="before")
    @classmethod
    def _dotted(cls, value: Any) -> Any:
        if isinstance(value, str):
            table, dot, column = value.partition(".")
            if not dot or not table or not column or "." in column:
                raise ValueError(f"'{value}' is not a reference; write 'table.column'")
            return {"table": table, "column": column}
        return value

    def __str__(self) -> str:
        return f"{self.table}.{self.column}"


class Retention(Strict):
    """Why the law requires the rows of a table to be kept as they are: when their person is
    erased, and when the person corrects what the rows hold (they record what happened)."""

    reason: Text


class Table(Strict):
    """A table of a connected database that holds data about people."""

    primary_key: SqlName
    identities: dict[IdentityKind, IdentityColumn] = Field(default_factory=dict)
    """Which column holds which kind of identity: a person is found by them."""
    references: dict[SqlName, Reference] = Field(default_factory=dict)
    """Columns pointing at rows of another declared table: a person's rows are found through
    them (the orders of a customer)."""
    columns: dict[SqlName, PersonalColumn] = Field(default_factory=dict)
    """The personal columns: what an access request shows and an erasure changes."""
    erase: TableErasure | None = None
    """`delete_row` to delete the person's rows; otherwise the column strategies apply."""
    keep: Retention | None = None
    """The rows are kept for the reason given: an erasure erases only their personal columns,
    and a correction leaves them as they were."""

    def lookup_columns(self) -> set[str]:
        """The columns a person's rows are looked up by: they need an index each."""
        return {ident.column for ident in self.identities.values()} | set(self.references)


class Dataset(Strict):
    """One connected database, reached by the SQLAlchemy URL in an environment variable."""

    url_env: EnvironmentVariable
    """The variable holding the URL (never the file: a URL carries the database password)."""
    description: Text | None = None
    tables: dict[SqlName, Table] = Field(min_length=1)


class DatasetFile(Strict):
    """Every connected database Pledge answers requests for."""

    datasets: dict[SqlName, Dataset] = Field(min_length=1)
