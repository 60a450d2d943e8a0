"""A policy as a fideslang manifest: one system with a privacy declaration per purpose."""

from __future__ import annotations

import math
import re
from typing import Any

from pledge.policy.document import LegalBasis, PolicyDocument, RecipientKind
from pledge.policy.rules import fideslang_keys

_LEGAL_BASIS = {
    LegalBasis.CONTRACT: "Contract",
    LegalBasis.LEGITIMATE_INTEREST: "Legitimate interests",
    LegalBasis.LEGAL_OBLIGATION: "Legal obligations",
    LegalBasis.CONSENT: "Consent",
    # A purpose people may opt out of rests on legitimate interest, with the right to object.
    LegalBasis.OPT_OUT: "Legitimate interests",
}
_AUTHORITIES = {RecipientKind.LAW_ENFORCEMENT, RecipientKind.GOVERNMENT}


def export_fideslang(document: PolicyDocument) -> dict[str, Any]:
    """A manifest (`system`, `data_category`, `data_use`) that fideslang's models parse."""
    org = document.organization
    categories_by_purpose: dict[str, list[str]] = {key: [] for key in document.purposes}
    for category_key, category in document.data_categories.items():
        for purpose in category.purposes:
            categories_by_purpose[purpose].append(category_key)
    declarations = [
        _declaration(document, purpose_key, categories)
        for purpose_key, categories in categories_by_purpose.items()
        if categories
    ]
    longest_cookie = max(
        (t.lifetime.approximate_days() for c in document.cookies.values() for t in c.trackers),
        default=None,
    )
    system: dict[str, Any] = {
        "fides_key": _slug(org.trade_name or org.legal_name),
        "organization_fides_key": "default_organization",
        "name": org.trade_name or org.legal_name,
        "description": f"Personal data processing declared by {org.legal_name}'s privacy policy "
        f"version {document.version}, effective {document.effective_date.isoformat()}.",
        "system_type": "Service",
        "legal_name": org.legal_name,
        "legal_address": ", ".join(org.postal_address.lines()),
        "privacy_policy": org.website.rstrip("/") + "/privacy",
        "processes_personal_data": True,
        "uses_cookies": bool(document.cookies),
        "cookie_max_age_seconds": math.ceil(longest_cookie * 86400) if longest_cookie else None,
        "does_international_transfers": False,
        "privacy_declarations": declarations,
    }
    known = fideslang_keys()
    return {
        "data_category": [
            _custom(key, document.category_name(key), entry.description)
            for key, entry in document.data_categories.items()
            if key not in known["data_categories"]
        ],
        "data_use": [
            _custom(key, document.purpose_name(key), entry.description)
            for key, entry in document.purposes.items()
            if key not in known["purposes"]
        ],
        "system": [system],
    }


def _declaration(
    document: PolicyDocument, purpose_key: str, categories: list[str]
) -> dict[str, Any]:
    purpose = document.purposes[purpose_key]
    subjects = sorted(
        {
            subject
            for point in document.collection_points.values()
            for spec in point.fields.values()
            if purpose_key in spec.purposes
            for subject in point.subjects
        }
        or {"customer"}
    )
    recipients = [r for r in document.recipients.values() if purpose_key in r.purposes]
    shared = sorted({c for r in recipients for c in r.categories if c in categories})
    longest_days = max(
        document.data_categories[c]
        .retention.by_purpose.get(purpose_key, document.data_categories[c].retention)
        .period.approximate_days()
        for c in categories
    )
    third_parties = sorted({r.name for r in recipients if r.kind not in _AUTHORITIES})
    return {
        "name": document.purpose_name(purpose_key),
        "data_use": purpose_key,
        "data_categories": sorted(categories),
        "data_subjects": subjects,
        "legal_basis_for_processing": _LEGAL_BASIS[purpose.legal_basis],
        "flexible_legal_basis_for_processing": False,
        "retention_period": str(math.ceil(longest_days)),
        "data_shared_with_third_parties": bool(recipients),
        "third_parties": "; ".join(third_parties) or None,
        "shared_categories": shared,
    }


def _custom(key: str, name: str, description: str | None) -> dict[str, Any]:
    return {
        "fides_key": key,
        "organization_fides_key": "default_organization",
        "name": name,
        "description": description or name,
        "parent_key": key.rpartition(".")[0],
        "is_default": False,
    }


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_") or "system"
