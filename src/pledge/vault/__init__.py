"""The vault: subjects and their personal data, sealed, provenance-tracked and purpose-bound."""

from pledge.vault.redaction import PersonalDataScanner, Redaction
from pledge.vault.routes import answers_for_vault_errors
from pledge.vault.routes import api as api_routes
from pledge.vault.rules import (
    MAX_BATCH,
    MAX_FIELDS,
    MAX_IDENTITY_CHARS,
    MAX_VALUE_CHARS,
    IdentityKind,
    Source,
)
from pledge.vault.screening import ChildRefused
from pledge.vault.service import (
    Collected,
    CollectionRefused,
    NoPolicyInForce,
    StoredValue,
    SubjectData,
    SubjectErased,
    SubjectFrozen,
    SubjectNotFound,
    SubjectState,
    Submission,
    UnknownPurpose,
    ValueNotFound,
    Vault,
    all_live_subjects,
    check_live_subject,
    erased_subjects,
    live_subjects,
    restricted_subjects,
)

__all__ = [
    "MAX_BATCH",
    "MAX_FIELDS",
    "MAX_IDENTITY_CHARS",
    "MAX_VALUE_CHARS",
    "ChildRefused",
    "Collected",
    "CollectionRefused",
    "IdentityKind",
    "NoPolicyInForce",
    "PersonalDataScanner",
    "Redaction",
    "Source",
    "StoredValue",
    "SubjectData",
    "SubjectErased",
    "SubjectFrozen",
    "SubjectNotFound",
    "SubjectState",
    "Submission",
    "UnknownPurpose",
    "ValueNotFound",
    "Vault",
    "all_live_subjects",
    "answers_for_vault_errors",
    "api_routes",
    "check_live_subject",
    "erased_subjects",
    "live_subjects",
    "restricted_subjects",
]
