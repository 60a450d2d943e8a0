"""The audit log: hash-chained, append-only, holding identifiers and never personal values."""

from pledge.audit.rules import ChainBreak
from pledge.audit.service import Act, chain_head, entries_for, record, record_many, verify_chain
from pledge.audit.tables import AuditEntry

__all__ = [
    "Act",
    "AuditEntry",
    "ChainBreak",
    "chain_head",
    "entries_for",
    "record",
    "record_many",
    "verify_chain",
]
