"""Connected databases: a person's rows in external tables, found, shown, erased, corrected."""

from pledge.datasets.document import (
    ColumnErasure,
    Dataset,
    DatasetFile,
    IdentityColumn,
    PersonalColumn,
    Reference,
    Retention,
    Table,
    TableErasure,
)
from pledge.datasets.loader import (
    DatasetProblem,
    DatasetsInvalid,
    load_datasets,
    load_datasets_text,
)
from pledge.datasets.rules import check_against_policy, mask_value
from pledge.datasets.service import (
    ConnectedDatabases,
    ConnectedRecord,
    ConnectedValue,
    CorrectionReport,
    DatasetUnavailable,
    ErasedTable,
    ErasureReport,
    Located,
    Retained,
    UnknownCategory,
)

__all__ = [
    "ColumnErasure",
    "ConnectedDatabases",
    "ConnectedRecord",
    "ConnectedValue",
    "CorrectionReport",
    "Dataset",
    "DatasetFile",
    "DatasetProblem",
    "DatasetUnavailable",
    "DatasetsInvalid",
    "ErasedTable",
    "ErasureReport",
    "IdentityColumn",
    "Located",
    "PersonalColumn",
    "Reference",
    "Retained",
    "Retention",
    "Table",
    "TableErasure",
    "UnknownCategory",
    "check_against_policy",
    "load_datasets",
    "load_datasets_text",
    "mask_value",
]
