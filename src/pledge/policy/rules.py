"""Pure policy rules: cross-references, taxonomy, what a purpose may read, and version diffs.

Nothing here reads a file, a database or the network; every function is a pure function of
the policy it is given, so it can be compiled once per policy version and called freely.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cache
from typing import Any, NamedTuple

from fideslang.default_taxonomy import DEFAULT_TAXONOMY
from fideslang.models import DataCategory as FidesDataCategory
from fideslang.models import DataUse as FidesDataUse
from pydantic import BaseModel, ValidationError

from pledge.policy.document import (
    Children,
    CollectionPoint,
    CookieCategory,
    DataCategory,
    DirectMarketing,
    GpcAnswer,
    LegalBasis,
    PolicyDocument,
    PrivacyRequests,
    Purpose,
    Recipient,
    Signals,
)


class Problem(NamedTuple):
    """Something wrong at `path` inside the policy."""

    path: tuple[str | int, ...]
    message: str


@dataclass(frozen=True)
class PolicyParts:
    """The sections of a policy that validated on their own; absent sections are skipped."""

    data_categories: Mapping[str, DataCategory] = field(default_factory=dict)
    purposes: Mapping[str, Purpose] = field(default_factory=dict)
    collection_points: Mapping[str, CollectionPoint] = field(default_factory=dict)
    recipients: Mapping[str, Recipient] = field(default_factory=dict)
    cookies: Mapping[str, CookieCategory] = field(default_factory=dict)
    signals: Signals | None = None
    children: Children | None = None
    requests: PrivacyRequests | None = None

    @classmethod
    def of(cls, document: PolicyDocument) -> PolicyParts:
        """All parts of a complete document."""
        return cls(
            data_categories=document.data_categories,
            purposes=document.purposes,
            collection_points=document.collection_points,
            recipients=document.recipients,
            cookies=document.cookies,
            signals=document.signals,
            children=document.children,
            requests=document.requests,
        )


@cache
def fideslang_keys() -> Mapping[str, frozenset[str]]:
    """The fideslang taxonomy's keys: data categories, data uses and data subjects."""
    return {
        "data_categories": frozenset(c.fides_key for c in DEFAULT_TAXONOMY.data_category),
        "purposes": frozenset(u.fides_key for u in DEFAULT_TAXONOMY.data_use),
        "data_subjects": frozenset(s.fides_key for s in DEFAULT_TAXONOMY.data_subject),
    }


def check_policy(parts: PolicyParts, declared: Mapping[str, set[str]]) -> list[Problem]:
    """Every cross-reference and taxonomy problem in `parts`.

    `declared` holds, per entry section, every key the file declares (even entries that failed
    their own validation), so a reference to a broken entry is not also reported as dangling.
    """
    checks = (
        _taxonomy_problems(parts, declared),
        _category_problems(parts, declared),
        _collection_point_problems(parts, declared),
        _recipient_problems(parts, declared),
        _cookie_problems(parts, declared),
        _purpose_problems(parts),
        _request_problems(parts, declared),
    )
    return [problem for check in checks for problem in check]


def _taxonomy_problems(parts: PolicyParts, declared: Mapping[str, set[str]]) -> Iterable[Problem]:
    known = fideslang_keys()
    models: dict[str, type[BaseModel]] = {
        "data_categories": FidesDataCategory,
        "purposes": FidesDataUse,
    }
    entries: dict[str, Mapping[str, DataCategory | Purpose]] = {
        "data_categories": parts.data_categories,
        "purposes": parts.purposes,
    }
    kind_name = {"data_categories": "data category", "purposes": "data use"}
    for section, model in models.items():
        for key in sorted(declared.get(section, set())):
            if key in known[section]:
                continue
            parent = key.rpartition(".")[0]
            if not parent or not (parent in known[section] or parent in declared[section]):
                yield Problem(
                    (section, key),
                    f"'{key}' is not a fideslang {kind_name[section]}; a custom key must extend "
                    f"a fideslang key or one declared in this section (e.g. "
                    f"'{_closest_known(key, known[section])}.your_name')",
                )
                continue
            entry = entries[section].get(key)
            if entry is not None and not entry.name:
                yield Problem((section, key, "name"), "a custom key needs a name")
            try:
                model.model_validate({"fides_key": key, "parent_key": parent, "name": key})
            except ValidationError as error:
                yield Problem(
                    (section, key), f"fideslang refuses this key: {error.errors()[0]['msg']}"
                )


def _closest_known(key: str, known: frozenset[str]) -> str:
    parts = key.split(".")
    for end in range(len(parts), 0, -1):
        if ".".join(parts[:end]) in known:
            return ".".join(parts[:end])
    return sorted(k for k in known if "." not in k)[0]


def _category_problems(parts: PolicyParts, declared: Mapping[str, set[str]]) -> Iterable[Problem]:
    for key, category in parts.data_categories.items():
        for index, purpose in enumerate(category.purposes):
            if purpose not in declared["purposes"]:
                yield Problem(
                    ("data_categories", key, "purposes", index), _undeclared("purpose", purpose)
                )
        for purpose in category.retention.by_purpose:
            path = ("data_categories", key, "retention", "by_purpose", purpose)
            if purpose not in declared["purposes"]:
                yield Problem(path, _undeclared("purpose", purpose))
            elif purpose not in category.purposes:
                yield Problem(path, f"'{purpose}' is not one of this category's purposes")


def _collection_point_problems(
    parts: PolicyParts, declared: Mapping[str, set[str]]
) -> Iterable[Problem]:
    subjects = fideslang_keys()["data_subjects"]
    for point_key, point in parts.collection_points.items():
        base = ("collection_points", point_key)
        for index, subject in enumerate(point.subjects):
            if subject not in subjects:
                yield Problem(
                    (*base, "subjects", index), f"'{subject}' is not a fideslang data subject"
                )
        for field_key, spec in point.fields.items():
            path = (*base, "fields", field_key)
            category = parts.data_categories.get(spec.category)
            if spec.category not in declared["data_categories"]:
                yield Problem((*path, "category"), _undeclared("data category", spec.category))
            elif category is not None and not category.linkable:
                yield Problem(
                    (*path, "category"),
                    f"'{spec.category}' is declared never linkable to a person, so no collection "
                    "point may store it",
                )
            for index, purpose in enumerate(spec.purposes):
                if purpose not in declared["purposes"]:
                    yield Problem((*path, "purposes", index), _undeclared("purpose", purpose))
                elif category is not None and purpose not in category.purposes:
                    yield Problem(
                        (*path, "purposes", index),
                        f"'{purpose}' is not a purpose '{spec.category}' may serve",
                    )


def _recipient_problems(parts: PolicyParts, declared: Mapping[str, set[str]]) -> Iterable[Problem]:
    for key, recipient in parts.recipients.items():
        base = ("recipients", key)
        for index, purpose in enumerate(recipient.purposes):
            if purpose not in declared["purposes"]:
                yield Problem((*base, "purposes", index), _undeclared("purpose", purpose))
        for index, category_key in enumerate(recipient.categories):
            category = parts.data_categories.get(category_key)
            if category_key not in declared["data_categories"]:
                yield Problem(
                    (*base, "categories", index), _undeclared("data category", category_key)
                )
            elif category is not None and not set(category.purposes) & set(recipient.purposes):
                yield Problem(
                    (*base, "categories", index),
                    f"'{category_key}' serves none of this recipient's purposes",
                )
        if recipient.own_direct_marketing and not any(
            (p := parts.purposes.get(purpose)) and p.direct_marketing is DirectMarketing.THIRD_PARTY
            for purpose in recipient.purposes
        ):
            yield Problem(
                (*base, "own_direct_marketing"),
                "a recipient that markets to people itself needs a purpose with "
                "direct_marketing: third_party",
            )


def _cookie_problems(parts: PolicyParts, declared: Mapping[str, set[str]]) -> Iterable[Problem]:
    for key, cookie_category in parts.cookies.items():
        for index, purpose in enumerate(cookie_category.purposes):
            if purpose not in declared["purposes"]:
                yield Problem(("cookies", key, "purposes", index), _undeclared("purpose", purpose))
        for index, tracker in enumerate(cookie_category.trackers):
            if tracker.provider is not None and tracker.provider not in declared["recipients"]:
                yield Problem(
                    ("cookies", key, "trackers", index, "provider"),
                    _undeclared("recipient", tracker.provider),
                )


def _purpose_problems(parts: PolicyParts) -> Iterable[Problem]:
    choice = {LegalBasis.CONSENT, LegalBasis.OPT_OUT}
    for key, purpose in parts.purposes.items():
        path = ("purposes", key, "legal_basis")
        if (purpose.sale or purpose.sharing) and purpose.legal_basis not in choice:
            yield Problem(path, "a sale or sharing purpose must be consent or opt_out")
        if (
            purpose.direct_marketing is not DirectMarketing.NONE
            and purpose.legal_basis not in choice
        ):
            yield Problem(path, "a direct-marketing purpose must be consent or opt_out")
    sells = [key for key, p in parts.purposes.items() if p.sale or p.sharing]
    if sells and parts.signals and parts.signals.global_privacy_control is GpcAnswer.NOT_HONORED:
        yield Problem(
            ("signals", "global_privacy_control"),
            f"purposes {', '.join(sells)} sell or share data, so Global Privacy Control must be "
            "honored as an opt-out of sale and sharing",
        )


def _request_problems(parts: PolicyParts, declared: Mapping[str, set[str]]) -> Iterable[Problem]:
    if parts.requests is None:
        return
    for index, category in enumerate(parts.requests.data_points):
        path = ("requests", "data_points", index)
        if category not in declared.get("data_categories", set()):
            yield Problem(path, _undeclared("data category", category))
            continue
        spec = parts.data_categories.get(category)
        if spec is not None and not spec.linkable:
            yield Problem(path, f"'{category}' is never linked to a person: it cannot prove one")


def _undeclared(kind: str, key: str) -> str:
    return f"'{key}' is not a declared {kind}"


# --- What a purpose may read ------------------------------------------------------------------


@dataclass(frozen=True)
class PurposeMap:
    """For each purpose, the data categories it may use: compiled once per policy version."""

    categories_by_purpose: Mapping[str, frozenset[str]]

    def allowed_categories(self, purpose: str) -> frozenset[str]:
        """The categories `purpose` may use; `KeyError` for a purpose the policy does not know."""
        return self.categories_by_purpose[purpose]

    def permits(self, purpose: str, category: str) -> bool:
        """Whether `purpose` may use `category` (false for unknown purposes)."""
        return category in self.categories_by_purpose.get(purpose, frozenset())


def compile_purpose_map(document: PolicyDocument) -> PurposeMap:
    """Invert the categories' purpose lists into a purpose → categories lookup."""
    table: dict[str, set[str]] = {key: set() for key in document.purposes}
    for category_key, category in document.data_categories.items():
        for purpose in category.purposes:
            table[purpose].add(category_key)
    return PurposeMap({purpose: frozenset(keys) for purpose, keys in table.items()})


# --- Differences between versions -------------------------------------------------------------


@dataclass(frozen=True)
class Change:
    """One difference between two policy versions."""

    section: str
    key: str
    change: str  # "added", "removed" or "changed"
    details: tuple[str, ...] = ()

    def __str__(self) -> str:
        sign = {"added": "+", "removed": "-", "changed": "~"}[self.change]
        tail = f" ({'; '.join(self.details)})" if self.details else ""
        return f"{sign} {self.section}.{self.key} {self.change}{tail}"


DIFFED_SECTIONS = ("data_categories", "purposes", "recipients", "collection_points", "cookies")


def diff_policies(old: PolicyDocument, new: PolicyDocument) -> list[Change]:
    """What `new` adds, removes and changes relative to `old`, retention periods called out."""
    changes: list[Change] = []
    for section in DIFFED_SECTIONS:
        before: Mapping[str, BaseModel] = getattr(old, section)
        after: Mapping[str, BaseModel] = getattr(new, section)
        for key in sorted(after.keys() - before.keys()):
            changes.append(Change(section, key, "added"))
        for key in sorted(before.keys() - after.keys()):
            changes.append(Change(section, key, "removed"))
        for key in sorted(before.keys() & after.keys()):
            details = _field_changes(
                before[key].model_dump(mode="json"), after[key].model_dump(mode="json")
            )
            if details:
                changes.append(Change(section, key, "changed", tuple(details)))
    return changes


def retention_changes(old: PolicyDocument, new: PolicyDocument) -> list[Change]:
    """Retention periods that differ between versions, for categories in both."""
    changes = []
    for key in sorted(old.data_categories.keys() & new.data_categories.keys()):
        before, after = old.data_categories[key].retention, new.data_categories[key].retention
        if before != after:
            detail = f"{before.period} from {before.starts} -> {after.period} from {after.starts}"
            changes.append(Change("retention", key, "changed", (detail,)))
    return changes


def _field_changes(before: Any, after: Any, prefix: str = "") -> list[str]:
    if isinstance(before, dict) and isinstance(after, dict):
        out: list[str] = []
        for name in sorted(before.keys() | after.keys()):
            out.extend(_field_changes(before.get(name), after.get(name), f"{prefix}{name}."))
        return out
    if before == after:
        return []
    return [f"{prefix.rstrip('.')}: {_show(before)} -> {_show(after)}"]


def _show(value: Any) -> str:
    if isinstance(value, dict) and set(value) == {"amount", "unit"}:
        return f"{value['amount']} {value['unit']}{'s' if value['amount'] != 1 else ''}"
    return "(none)" if value is None else str(value)
