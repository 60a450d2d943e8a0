"""Pure rules of the privacy center: codes, and the choices a person is offered."""

from __future__ import annotations

import re

from pledge.policy import load_policy_file
from pledge.policy.document import LegalBasis
from pledge.privacy_center.rules import (
    GROUPS,
    choice_items,
    code_digest,
    codes_match,
    form_token,
    new_code,
)
from tests.conftest import REFERENCE_POLICY

SECRET = b"k" * 32


def test_codes_are_six_digits_including_leading_zeros() -> None:
    codes = [new_code() for _ in range(2000)]
    assert all(re.fullmatch(r"\d{6}", code) for code in codes)
    assert any(code.startswith("0") for code in codes)


def test_a_code_matches_only_its_own_challenge_under_the_same_key() -> None:
    digest = code_digest(SECRET, "challenge-1", "012345")
    assert codes_match(SECRET, "challenge-1", "012345", digest)
    assert not codes_match(SECRET, "challenge-2", "012345", digest)
    assert not codes_match(SECRET, "challenge-1", "012346", digest)
    assert not codes_match(b"other key", "challenge-1", "012345", digest)


def test_form_tokens_differ_per_session() -> None:
    assert form_token(SECRET, "a") != form_token(SECRET, "b")


def test_every_consent_or_opt_out_purpose_is_offered_once_and_nothing_else() -> None:
    document = load_policy_file(REFERENCE_POLICY).document
    items = choice_items(document)
    expected = {
        key
        for key, purpose in document.purposes.items()
        if purpose.legal_basis in {LegalBasis.CONSENT, LegalBasis.OPT_OUT}
    }
    assert sorted(item.purpose for item in items) == sorted(expected)
    groups = {item.purpose: item.group for item in items}
    assert groups["marketing.communications.email"] == "E-mail"
    assert groups["marketing.communications.postal"] == "Post"
    assert groups["marketing.advertising.third_party.targeted"] == "Cookies and ads"
    assert [GROUPS.index(item.group) for item in items] == sorted(
        GROUPS.index(item.group) for item in items
    )
