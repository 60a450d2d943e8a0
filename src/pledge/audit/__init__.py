"""The audit log: hash-chained, append-only, holding identifiers and never personal values."""

from pledge.audit.rules import ChainBreak
from pledge.audit.service import chain_head, entries_for, record, verify_chain
from pledge.audit.tables import AuditEntry

__all__ = ["AuditEntry", "ChainBreak", "chain_head", "entries_for", "record", "verify_chain"]
