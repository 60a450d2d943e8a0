"""What a collection point of the reference policy accepts, and which identities it yields."""

from __future__ import annotations

from pathlib import Path

import pytest

from pledge.policy import PolicyDocument, load_policy_file
from pledge.vault.rules import (
    MAX_FIELDS,
    MAX_VALUE_CHARS,
    IdentityKind,
    Problem,
    identities_in,
    submission_problems,
    value_aad,
)

REFERENCE = Path(__file__).resolve().parents[3] / "policies" / "reference.yaml"

REGISTRATION = {
    "name": "Jane Doe",
    "email": "jane@example.com",
    "password": "correct horse battery staple",
    "date_of_birth": "1990-04-01",
}
"""Every field the registration collection point requires, each valid."""


@pytest.fixture(scope="module")
def policy() -> PolicyDocument:
    return load_policy_file(REFERENCE).document


def problems(
    policy: PolicyDocument,
    fields: dict[str, str],
    point: str = "registration",
    *,
    has_identity: bool = False,
) -> list[Problem]:
    return submission_problems(policy, point, fields, has_identity=has_identity)


def test_a_complete_registration_has_no_problem(policy: PolicyDocument) -> None:
    assert problems(policy, {**REGISTRATION, "phone": "(415) 555-0132"}) == []


def test_an_unknown_collection_point_is_named_with_the_known_ones(policy: PolicyDocument) -> None:
    found = problems(policy, REGISTRATION, "lottery")

    assert len(found) == 1
    assert found[0].path == ("collection_point",)
    assert "'lottery' is not a collection point" in found[0].message
    known = ", ".join(sorted(policy.collection_points))
    assert f"(known: {known})" in found[0].message
    assert "registration" in found[0].message
    assert "newsletter" in found[0].message


def test_a_field_the_collection_point_does_not_have_is_refused(policy: PolicyDocument) -> None:
    found = problems(policy, {**REGISTRATION, "shoe_size": "42"})

    assert [p.path for p in found] == [("fields", "shoe_size")]
    assert "not a field of 'registration'" in found[0].message
    assert "email" in found[0].message
    assert "date_of_birth" in found[0].message


def test_a_missing_required_field_is_named(policy: PolicyDocument) -> None:
    fields = {k: v for k, v in REGISTRATION.items() if k != "date_of_birth"}

    assert problems(policy, fields) == [
        Problem(("fields", "date_of_birth"), "required by 'registration' but missing")
    ]


def test_a_missing_optional_field_is_no_problem(policy: PolicyDocument) -> None:
    assert "phone" not in REGISTRATION
    assert problems(policy, REGISTRATION) == []


@pytest.mark.parametrize("empty", ["", "   ", "\t\n"])
def test_an_empty_value_is_refused_with_advice_to_leave_the_field_out(
    policy: PolicyDocument, empty: str
) -> None:
    assert problems(policy, {**REGISTRATION, "name": empty}) == [
        Problem(("fields", "name"), "empty; leave an optional field out instead")
    ]


def test_a_value_one_character_over_the_limit_is_refused(policy: PolicyDocument) -> None:
    at_limit = problems(policy, {**REGISTRATION, "job_title": "x" * MAX_VALUE_CHARS})
    over = problems(policy, {**REGISTRATION, "job_title": "x" * (MAX_VALUE_CHARS + 1)})

    assert at_limit == []
    assert over == [Problem(("fields", "job_title"), f"longer than {MAX_VALUE_CHARS} characters")]


def test_more_fields_than_allowed_are_refused_as_a_whole(policy: PolicyDocument) -> None:
    extra = {f"extra_{n}": "x" for n in range(MAX_FIELDS + 1 - len(REGISTRATION))}
    fields = {**REGISTRATION, **extra}
    assert len(fields) == MAX_FIELDS + 1

    found = problems(policy, fields)

    assert Problem(("fields",), f"more than {MAX_FIELDS} fields") in found


def test_exactly_the_most_fields_allowed_are_not_refused_as_a_whole(
    policy: PolicyDocument,
) -> None:
    extra = {f"extra_{n}": "x" for n in range(MAX_FIELDS - len(REGISTRATION))}

    found = problems(policy, {**REGISTRATION, **extra})

    assert ("fields",) not in [p.path for p in found]


def test_an_invalid_e_mail_in_an_e_mail_field_is_refused(policy: PolicyDocument) -> None:
    assert problems(policy, {**REGISTRATION, "email": "jane at example dot com"}) == [
        Problem(("fields", "email"), "not an e-mail address")
    ]


def test_an_impossible_phone_number_in_a_phone_field_is_refused(policy: PolicyDocument) -> None:
    assert problems(policy, {**REGISTRATION, "phone": "555-01"}) == [
        Problem(("fields", "phone"), "not a possible phone number")
    ]


def test_free_text_in_a_field_that_is_no_identity_is_not_checked_as_one(
    policy: PolicyDocument,
) -> None:
    assert problems(policy, {**REGISTRATION, "company": "not an e-mail @ all"}) == []


def test_a_submission_with_no_identity_anywhere_is_refused(policy: PolicyDocument) -> None:
    found = problems(policy, {"name": "Jane Doe", "mailing_address": "1 Main St"}, "postal_mailing")

    assert [p.path for p in found] == [("identity",)]
    assert "give an identity or a subject_id" in found[0].message


def test_a_submission_without_identity_fields_is_accepted_when_an_identity_is_given(
    policy: PolicyDocument,
) -> None:
    fields = {"name": "Jane Doe", "mailing_address": "1 Main St"}

    assert problems(policy, fields, "postal_mailing", has_identity=True) == []


def test_an_unknown_field_named_like_an_identity_does_not_count_as_one(
    policy: PolicyDocument,
) -> None:
    fields = {"name": "Jane Doe", "mailing_address": "1 Main St", "email": "jane@example.com"}

    found = problems(policy, fields, "postal_mailing")

    assert [p.path for p in found] == [("fields", "email"), ("identity",)]


def test_every_problem_of_a_submission_is_reported_at_once(policy: PolicyDocument) -> None:
    fields = {"email": "nope", "name": "", "colour": "blue"}

    found = problems(policy, fields)

    assert {p.path for p in found} == {
        ("fields", "email"),
        ("fields", "name"),
        ("fields", "colour"),
        ("fields", "password"),
        ("fields", "date_of_birth"),
    }


def test_the_identities_of_a_registration_are_canonical_with_the_e_mail_first(
    policy: PolicyDocument,
) -> None:
    fields = {
        "phone": "(415) 555-0132",
        "name": "Jane Doe",
        "email": "  Jane.Doe@Example.COM ",
        "password": "secret",
    }

    assert identities_in(policy, "registration", fields) == [
        (IdentityKind.EMAIL, "jane.doe@example.com"),
        (IdentityKind.PHONE, "+14155550132"),
    ]


def test_a_social_login_yields_its_account_and_e_mail_in_policy_order(
    policy: PolicyDocument,
) -> None:
    fields = {"account": "GitHub:octocat", "email": "Octo@Example.com"}

    assert identities_in(policy, "social_login", fields) == [
        (IdentityKind.EMAIL, "octo@example.com"),
        (IdentityKind.SOCIAL, "github:octocat"),
    ]


def test_a_submission_without_identity_fields_yields_no_identity(policy: PolicyDocument) -> None:
    fields = {"name": "Jane Doe", "mailing_address": "1 Main St"}

    assert identities_in(policy, "postal_mailing", fields) == []


def test_the_associated_data_of_a_value_binds_subject_point_category_field_and_version() -> None:
    base = ("subject-1", "newsletter", "user.contact.email", "email", 1)
    variants = [
        ("subject-2", "newsletter", "user.contact.email", "email", 1),
        ("subject-1", "registration", "user.contact.email", "email", 1),
        ("subject-1", "newsletter", "user.contact.phone_number", "email", 1),
        ("subject-1", "newsletter", "user.contact.email", "backup_email", 1),
        ("subject-1", "newsletter", "user.contact.email", "email", 2),
    ]

    all_aads = {value_aad(*args) for args in [base, *variants]}

    assert len(all_aads) == 6
    assert value_aad(*base) == value_aad(*base)
    assert value_aad(*base) == b"pledge:value:subject-1:newsletter:user.contact.email:email:1"
