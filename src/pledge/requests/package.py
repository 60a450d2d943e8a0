"""The access package: what Pledge holds about a person, as JSON a machine reads and a page a
person reads. Its shape is published as a JSON Schema: docs/access-package.schema.json.

Pure: it is built from values already read, so the same inputs give the same package.
Categories the policy marks `shown_in_access_requests: false` (passwords, payment cards) are
named, never shown: the person learns that they are held, not their values."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pledge.policy.document import PolicyDocument

FORMAT_VERSION = 1


@dataclass(frozen=True)
class HeldValue:
    """One value as the vault returned it."""

    category: str
    field: str
    collection_point: str
    value: str
    source: str
    collected_at: dt.datetime
    version: int


@dataclass(frozen=True)
class ConnectedValue:
    """One value found in a connected database."""

    dataset: str
    table: str
    record: str
    column: str
    category: str
    value: str | None


@dataclass(frozen=True)
class ConsentEntry:
    """One grant or withdrawal from the ledger."""

    purpose: str
    action: str
    method: str
    source: str
    policy_version: str
    at: dt.datetime
    expires_at: dt.datetime | None


@dataclass(frozen=True)
class PastRequest:
    """A request the person made before (or this one)."""

    id: str
    kind: str
    status: str
    received_on: dt.date
    closed_at: dt.datetime | None


def build_package(
    *,
    document: PolicyDocument,
    policy_version: str,
    request_id: str,
    kind: str,
    received_on: dt.date,
    created_at: dt.datetime,
    held: Sequence[HeldValue],
    withheld_categories: Sequence[str],
    connected: Sequence[ConnectedValue],
    consent: Sequence[ConsentEntry],
    requests: Sequence[PastRequest],
) -> dict[str, Any]:
    """The package as a JSON-ready mapping."""
    by_category: dict[str, list[dict[str, Any]]] = {}
    for value in held:
        by_category.setdefault(value.category, []).append(
            {
                "value": value.value,
                "field": value.field,
                "collected_at": _instant(value.collected_at),
                "source": _source_name(document, value.collection_point, value.source),
                "version": value.version,
            }
        )
    for item in connected:
        if item.value is None:
            continue
        by_category.setdefault(item.category, []).append(
            {
                "value": item.value,
                "field": f"{item.table}.{item.column}",
                "collected_at": None,
                "source": f"{item.dataset} database, {item.table} record {item.record}",
                "version": 1,
            }
        )
    categories = [_category(document, key, values) for key, values in sorted(by_category.items())]
    organization = document.organization
    return {
        "format_version": FORMAT_VERSION,
        "request": {
            "id": request_id,
            "kind": kind,
            "received_on": received_on.isoformat(),
            "created_at": _instant(created_at),
        },
        "organization": {
            "name": organization.legal_name,
            "privacy_email": str(organization.privacy_email),
        },
        "policy_version": policy_version,
        "categories": categories,
        "withheld_categories": [
            {
                "key": key,
                "name": document.category_name(key),
                "reason": "held, but never shown: this information is kept secret for your "
                "own protection",
            }
            for key in sorted(set(withheld_categories))
        ],
        "consent_history": [
            {
                "purpose": entry.purpose,
                "purpose_name": document.purpose_name(entry.purpose),
                "action": entry.action,
                "method": entry.method,
                "source": entry.source,
                "policy_version": entry.policy_version,
                "at": _instant(entry.at),
                "expires_at": None if entry.expires_at is None else _instant(entry.expires_at),
            }
            for entry in consent
        ],
        "requests": [
            {
                "id": past.id,
                "kind": past.kind,
                "status": past.status,
                "received_on": past.received_on.isoformat(),
                "closed_at": None if past.closed_at is None else _instant(past.closed_at),
            }
            for past in requests
        ],
    }


def _category(document: PolicyDocument, key: str, values: list[dict[str, Any]]) -> dict[str, Any]:
    spec = document.data_categories.get(key)
    purposes = [] if spec is None else spec.purposes
    recipients = [
        {"key": rkey, "name": recipient.name, "kind": recipient.kind.value}
        for rkey, recipient in document.recipients.items()
        if key in recipient.categories
    ]
    retention = None
    if spec is not None:
        retention = {
            "period": str(spec.retention.period),
            "starts": spec.retention.starts,
            "then": spec.retention.then,
            "longer_for": [
                {
                    "purpose": purpose,
                    "period": str(longer.period),
                    "reason": longer.reason,
                }
                for purpose, longer in spec.retention.by_purpose.items()
            ],
        }
    return {
        "key": key,
        "name": document.category_name(key),
        "values": values,
        "purposes": [
            {"key": purpose, "name": document.purpose_name(purpose)} for purpose in purposes
        ],
        "recipients": recipients,
        "retention": retention,
    }


def _source_name(document: PolicyDocument, collection_point: str, source: str) -> str:
    point = document.collection_points.get(collection_point)
    name = point.name if point is not None else collection_point
    return f"{name} ({source.replace('_', ' ')})"


def _instant(moment: dt.datetime) -> str:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.astimezone(dt.UTC).isoformat()


def readable_sections(package: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The package's categories in the order a person reads them: most values first."""
    return sorted(package["categories"], key=lambda c: (-len(c["values"]), c["name"]))
