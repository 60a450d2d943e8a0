"""The audit log: hash-chained, append-only, holding identifiers and never personal values."""

from pledge.audit.rules import ChainBreak
from pledge.audit.service import (
    Act,
    advance_chain,
    audited_since,
    audited_up_to,
    chain_head,
    entries_for,
    lock_chain,
    recent_entries,
    record,
    record_many,
    reserve_chain,
    verify_chain,
)
from pledge.audit.tables import AuditEntry, ChainHeadColumns

__all__ = [
    "Act",
    "AuditEntry",
    "ChainBreak",
    "ChainHeadColumns",
    "advance_chain",
    "audited_since",
    "audited_up_to",
    "chain_head",
    "entries_for",
    "lock_chain",
    "recent_entries",
    "record",
    "record_many",
    "reserve_chain",
    "verify_chain",
]
