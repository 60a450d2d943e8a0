"""Identities in canonical form: the same person's e-mail, phone or account indexes the same."""

from __future__ import annotations

import string
import unicodedata

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from pledge.vault.rules import MAX_IDENTITY_CHARS, IdentityInvalid, IdentityKind, normalize_identity

# --- E-mail -----------------------------------------------------------------------------------


def test_an_e_mail_is_lowercased_and_stripped_of_surrounding_spaces() -> None:
    assert normalize_identity(IdentityKind.EMAIL, "  Jane.DOE@Example.COM\t\n") == (
        "jane.doe@example.com"
    )


def test_an_e_mail_typed_with_a_combining_accent_equals_the_precomposed_one() -> None:
    decomposed = "Ame\u0301lie@example.com"
    precomposed = "Am\u00e9lie@example.com"

    assert decomposed != precomposed
    assert normalize_identity(IdentityKind.EMAIL, decomposed) == "am\u00e9lie@example.com"
    assert normalize_identity(IdentityKind.EMAIL, precomposed) == "am\u00e9lie@example.com"


@pytest.mark.parametrize(
    "value",
    [
        "plain",
        "jane@",
        "@example.com",
        "jane@example",
        "jane@example.c",
        "jane doe@example.com",
        "jane@@example.com",
        "jane@exa mple.com",
        "x" * 65 + "@example.com",
    ],
)
def test_a_value_that_is_not_an_e_mail_address_is_refused(value: str) -> None:
    with pytest.raises(IdentityInvalid, match="not an e-mail address"):
        normalize_identity(IdentityKind.EMAIL, value)


def test_the_longest_e_mail_allowed_is_accepted_and_one_character_more_is_refused() -> None:
    longest = "jane@" + "x" * (MAX_IDENTITY_CHARS - len("jane@.com")) + ".com"
    assert len(longest) == MAX_IDENTITY_CHARS

    assert normalize_identity(IdentityKind.EMAIL, longest) == longest
    with pytest.raises(IdentityInvalid, match=f"1 to {MAX_IDENTITY_CHARS} characters"):
        normalize_identity(IdentityKind.EMAIL, "x" + longest)


def test_an_e_mail_that_grows_when_lowercased_is_refused_if_it_no_longer_fits() -> None:
    # "İ" (U+0130) lowercases to two code points, "i" and a combining dot above.
    value = "jane@" + "x" * 290 + "." + "\u0130" * 20
    assert len(value) <= MAX_IDENTITY_CHARS < len(value.lower())

    with pytest.raises(IdentityInvalid, match=f"1 to {MAX_IDENTITY_CHARS} characters"):
        normalize_identity(IdentityKind.EMAIL, value)


def test_an_e_mail_that_grows_when_lowercased_but_still_fits_has_a_stable_form() -> None:
    value = "jane@" + "x" * 290 + "." + "\u0130" * 10
    assert len(value.lower()) <= MAX_IDENTITY_CHARS

    canonical = normalize_identity(IdentityKind.EMAIL, value)

    assert canonical == value.lower()
    assert normalize_identity(IdentityKind.EMAIL, canonical) == canonical


_LETTERS = st.characters(categories=["Lu", "Ll", "Lt", "Mn", "Nd"])
_LOCAL_CHARS = _LETTERS | st.sampled_from(".+_-")
_LABEL = st.text(_LETTERS, min_size=1, max_size=20)
_SPACE = st.text(st.sampled_from(" \t\n\u00a0\u2003"), max_size=3)


@st.composite
def e_mails(draw: st.DrawFn) -> str:
    """E-mail addresses in any case and Unicode form, with spaces around them."""
    local = draw(st.text(_LOCAL_CHARS, min_size=1, max_size=30))
    labels = draw(st.lists(_LABEL, min_size=1, max_size=3))
    tld = draw(st.text(st.sampled_from(string.ascii_letters), min_size=2, max_size=6))
    address = f"{local}@{'.'.join(labels)}.{tld}"
    return draw(_SPACE) + address + draw(_SPACE)


@given(e_mails())
# Found by this test: "İ" lowercases to "i" + U+0307, which must be reordered after U+06EA.
@example("0@\u0130\u06ea.AA")
def test_normalizing_an_e_mail_twice_gives_what_normalizing_it_once_gave(value: str) -> None:
    once = normalize_identity(IdentityKind.EMAIL, value)

    assert normalize_identity(IdentityKind.EMAIL, once) == once
    assert once == once.lower()
    assert once == once.strip()
    assert unicodedata.is_normalized("NFC", once)


# --- Phone ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "spelling",
    [
        "(415) 555-0132",
        "415-555-0132",
        "415.555.0132",
        "415 555 0132",
        "  415 555 0132  ",
        "4155550132",
        "1-415-555-0132",
        "1 (415) 555-0132",
        "+1 415 555 0132",
        "+1.415.555.0132",
        "+14155550132",
        "011 1 415 555 0132",
        "tel:+1-415-555-0132",
        "\uff14\uff11\uff15\uff15\uff15\uff15\uff10\uff11\uff13\uff12",  # full-width digits
    ],
)
def test_every_spelling_of_a_us_phone_number_normalizes_to_the_same_e164(spelling: str) -> None:
    assert normalize_identity(IdentityKind.PHONE, spelling) == "+14155550132"


def test_a_foreign_number_written_with_its_country_code_keeps_it() -> None:
    assert normalize_identity(IdentityKind.PHONE, "+44 20 7946 0958") == "+442079460958"


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("123", "not a possible phone number"),
        ("555-01", "not a possible phone number"),
        ("+1 415 555 0132 999", "not a possible phone number"),
        ("12345678901234567", "not a possible phone number"),
        ("call me maybe", "not a phone number"),
        ("+999 1234", "not a phone number"),
    ],
)
def test_an_impossible_phone_number_is_refused(value: str, message: str) -> None:
    with pytest.raises(IdentityInvalid, match=message):
        normalize_identity(IdentityKind.PHONE, value)


# --- Social account and device ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "canonical"),
    [
        ("Twitter:@JaneDoe", "twitter:@JaneDoe"),
        ("  GitHub : octocat  ", "github:octocat"),
        ("MASTODON:@jane@example.social", "mastodon:@jane@example.social"),
    ],
)
def test_a_social_account_lowercases_the_network_and_keeps_the_account_as_written(
    value: str, canonical: str
) -> None:
    assert normalize_identity(IdentityKind.SOCIAL, value) == canonical


@pytest.mark.parametrize(
    "value", ["octocat", "github:", "github:   ", ":octocat", "git hub:octocat", "-github:x"]
)
def test_a_social_identity_not_written_network_colon_account_is_refused(value: str) -> None:
    with pytest.raises(IdentityInvalid, match="network:account"):
        normalize_identity(IdentityKind.SOCIAL, value)


def test_a_device_id_is_only_stripped() -> None:
    assert normalize_identity(IdentityKind.DEVICE, "  Frame-0042-AbC ") == "Frame-0042-AbC"


# --- Length, for every kind ---------------------------------------------------------------------


@pytest.mark.parametrize("kind", list(IdentityKind))
def test_a_value_longer_than_the_longest_identity_is_refused_for_every_kind(
    kind: IdentityKind,
) -> None:
    with pytest.raises(IdentityInvalid, match=f"1 to {MAX_IDENTITY_CHARS} characters"):
        normalize_identity(kind, "7" * (MAX_IDENTITY_CHARS + 1))


@pytest.mark.parametrize("kind", list(IdentityKind))
def test_an_empty_or_blank_identity_is_refused_for_every_kind(kind: IdentityKind) -> None:
    for value in ("", "   \t"):
        with pytest.raises(IdentityInvalid, match=f"1 to {MAX_IDENTITY_CHARS} characters"):
            normalize_identity(kind, value)
