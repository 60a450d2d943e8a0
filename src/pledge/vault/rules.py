"""Pure vault rules: identities in canonical form, and what a collection point accepts.

No I/O here: these functions take the policy document and the submitted values and say what
is wrong, so the same checks serve the HTTP API, the CLI and batch collection.
"""

from __future__ import annotations

import datetime as dt
import enum
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass

import phonenumbers

from pledge.policy.document import Channel, LegalBasis, PolicyDocument

MAX_VALUE_CHARS = 10_000
"""Longest value a field may hold (a comment of about 1,500 words)."""
MAX_FIELDS = 100
"""Most fields one submission may carry."""
MAX_BATCH = 1_000
"""Most submissions one batch may carry."""
MAX_IDENTITY_CHARS = 320
"""Longest identity value (the longest valid e-mail address)."""

_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]{2,}$")
_NETWORK = re.compile(r"^[a-z0-9][a-z0-9_-]{0,39}$")


class IdentityKind(enum.StrEnum):
    """Kinds of identity a subject can be found by."""

    EMAIL = "email"
    PHONE = "phone"
    SOCIAL = "social"
    DEVICE = "device"


DATE_OF_BIRTH = "user.demographic.date_of_birth"
"""The category whose values the age screen reads."""

IDENTITY_CATEGORIES = {
    "user.contact.email": IdentityKind.EMAIL,
    "user.contact.phone_number": IdentityKind.PHONE,
    "user.social.account": IdentityKind.SOCIAL,
    "user.device.device_id": IdentityKind.DEVICE,
}
"""Categories whose values also identify the subject, in the order one is picked as primary."""


Source = Channel
"""How a value reached Pledge (its provenance): the same channels a collection point declares,
since a value may arrive by another channel than its point's (a staff entry of a web form)."""


class IdentityInvalid(ValueError):
    """An identity value that cannot be put in canonical form."""


def normalize_identity(kind: IdentityKind, value: str) -> str:
    """The canonical form of an identity, so equal identities index equally.

    Normalizing a canonical form returns it unchanged; a value whose canonical form would be
    longer than MAX_IDENTITY_CHARS is refused.
    """
    canonical = _canonical(kind, unicodedata.normalize("NFC", value).strip())
    if not canonical or len(canonical) > MAX_IDENTITY_CHARS:
        raise IdentityInvalid(
            f"an identity ({kind.value}) must have 1 to {MAX_IDENTITY_CHARS} characters"
        )
    return canonical


def _canonical(kind: IdentityKind, text: str) -> str:
    if not text or len(text) > MAX_IDENTITY_CHARS:
        return ""
    if kind is IdentityKind.EMAIL:
        # Lowercasing can leave combining marks out of canonical order ("İ" -> "i" + dot), so
        # the lowercased text is normalized again: equal addresses always index equally.
        text = unicodedata.normalize("NFC", text.lower())
        if not _EMAIL.fullmatch(text):
            raise IdentityInvalid("not an e-mail address")
        return text
    if kind is IdentityKind.PHONE:
        try:
            number = phonenumbers.parse(text, "US")
        except phonenumbers.NumberParseException:
            raise IdentityInvalid("not a phone number") from None
        if not phonenumbers.is_possible_number(number):
            raise IdentityInvalid("not a possible phone number")
        return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    if kind is IdentityKind.SOCIAL:
        network, _, account = text.partition(":")
        network, account = network.strip().lower(), account.strip()
        if not _NETWORK.fullmatch(network) or not account:
            raise IdentityInvalid("a social identity is written 'network:account'")
        return f"{network}:{account}"
    return text


@dataclass(frozen=True)
class Problem:
    """Something wrong with a submission, at `path` (e.g. `fields.email`)."""

    path: tuple[str | int, ...]
    message: str


def submission_problems(
    document: PolicyDocument,
    collection_point: str,
    fields: Mapping[str, str],
    *,
    has_identity: bool,
) -> list[Problem]:
    """Every reason the policy refuses these fields at this collection point."""
    point = document.collection_points.get(collection_point)
    if point is None:
        known = ", ".join(sorted(document.collection_points))
        return [
            Problem(
                ("collection_point",),
                f"'{collection_point}' is not a collection point of the policy (known: {known})",
            )
        ]
    problems: list[Problem] = []
    if len(fields) > MAX_FIELDS:
        problems.append(Problem(("fields",), f"more than {MAX_FIELDS} fields"))
    for name, value in fields.items():
        if name not in point.fields:
            known = ", ".join(sorted(point.fields))
            problems.append(
                Problem(
                    ("fields", name), f"not a field of '{collection_point}' (its fields: {known})"
                )
            )
        elif len(value) > MAX_VALUE_CHARS:
            problems.append(Problem(("fields", name), f"longer than {MAX_VALUE_CHARS} characters"))
        elif not value.strip():
            problems.append(Problem(("fields", name), "empty; leave an optional field out instead"))
        elif (kind := IDENTITY_CATEGORIES.get(point.fields[name].category)) is not None:
            try:
                normalize_identity(kind, value)
            except IdentityInvalid as invalid:
                problems.append(Problem(("fields", name), str(invalid)))
    for name, spec in point.fields.items():
        if spec.required and name not in fields:
            problems.append(
                Problem(("fields", name), f"required by '{collection_point}' but missing")
            )
    if not has_identity and not any(
        point.fields[name].category in IDENTITY_CATEGORIES
        for name in fields
        if name in point.fields
    ):
        problems.append(
            Problem(
                ("identity",),
                "give an identity or a subject_id: no field here identifies the person",
            )
        )
    return problems


def identities_in(
    document: PolicyDocument, collection_point: str, fields: Mapping[str, str]
) -> list[tuple[IdentityKind, str]]:
    """The identities the submitted fields carry, in canonical form, primary first."""
    point = document.collection_points[collection_point]
    found: list[tuple[IdentityKind, str]] = []
    for category, kind in IDENTITY_CATEGORIES.items():
        for name, value in fields.items():
            if point.fields[name].category == category:
                found.append((kind, normalize_identity(kind, value)))
    return found


def value_aad(
    subject_id: str, collection_point: str, category: str, field: str, version: int
) -> bytes:
    """What a sealed value is bound to: it cannot be moved to another subject, collection
    point, category, field or version without failing to decrypt."""
    return f"pledge:value:{subject_id}:{collection_point}:{category}:{field}:{version}".encode()


@dataclass(frozen=True)
class KeptByLaw:
    """Why a value outlives its subject's erasure, and until when."""

    reason: str
    until: dt.datetime


def kept_by_law(
    document: PolicyDocument,
    *,
    category: str,
    collection_point: str,
    field: str,
    collected_at: dt.datetime,
) -> KeptByLaw | None:
    """Whether a value must be kept through an erasure: it was collected for a purpose resting
    on a legal obligation (the field's stated purposes), and the category keeps it longer for
    that purpose (`retention.by_purpose`, with its reason: invoices for tax), and that period
    has not run out. None when it goes with the rest."""
    point = document.collection_points.get(collection_point)
    spec = point.fields.get(field) if point else None
    kind = document.data_categories.get(category)
    if spec is None or kind is None:
        return None
    for purpose in spec.purposes:
        stated = document.purposes.get(purpose)
        rule = kind.retention.by_purpose.get(purpose)
        if stated is None or rule is None or stated.legal_basis is not LegalBasis.LEGAL_OBLIGATION:
            continue
        days = rule.period.approximate_days()
        return KeptByLaw(rule.reason, collected_at + dt.timedelta(days=days))
    return None
