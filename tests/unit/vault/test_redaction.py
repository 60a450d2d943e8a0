"""Personal data in free text is found and masked, offline."""

from __future__ import annotations

import socket

import pytest

from pledge.vault.redaction import MASKS, PersonalDataScanner


@pytest.fixture(scope="module")
def scanner() -> PersonalDataScanner:
    """One scanner for the module: building its analyzer takes about half a second."""
    return PersonalDataScanner()


@pytest.mark.parametrize(
    ("text", "kind", "secret"),
    [
        ("Write to jane.doe@example.com today.", "EMAIL_ADDRESS", "jane.doe@example.com"),
        ("Call me on (415) 555-0132 after six.", "PHONE_NUMBER", "555-0132"),
        ("My card is 4111 1111 1111 1111, thanks.", "CREDIT_CARD", "4111 1111 1111 1111"),
        ("See https://example.org/profile/jane for more.", "URL", "example.org"),
        ("I moved to 123 Main Street, Apt 4 last year.", "STREET_ADDRESS", "123 Main Street"),
    ],
)
def test_each_kind_of_personal_data_is_masked_and_counted(
    scanner: PersonalDataScanner, text: str, kind: str, secret: str
) -> None:
    result = scanner.scan(text)

    assert secret not in result.redacted
    assert MASKS[kind] in result.redacted
    assert result.findings == {kind: 1}


def test_the_text_around_a_finding_is_kept_as_it_was(scanner: PersonalDataScanner) -> None:
    result = scanner.scan("Write to jane.doe@example.com today.")

    assert result.redacted == "Write to [email] today."


def test_several_findings_are_each_masked_and_counted_by_kind(
    scanner: PersonalDataScanner,
) -> None:
    result = scanner.scan(
        "Mail jane@example.com or bob@example.org, or call (415) 555-0132; "
        "I live at 42 Elm Avenue, come by."
    )

    assert result.redacted == (
        "Mail [email] or [email], or call [phone]; I live at [street address], come by."
    )
    assert result.findings == {"EMAIL_ADDRESS": 2, "PHONE_NUMBER": 1, "STREET_ADDRESS": 1}


@pytest.mark.parametrize(
    "address", ["jane@mail.example.co.uk", "jane.doe@www.example.com", "a@b.io"]
)
def test_an_e_mail_whose_domain_looks_like_a_link_is_reported_once_as_an_e_mail(
    scanner: PersonalDataScanner, address: str
) -> None:
    result = scanner.scan(f"write to {address} please")

    assert result.redacted == "write to [email] please"
    assert result.findings == {"EMAIL_ADDRESS": 1}


@pytest.mark.parametrize(
    "text",
    [
        "Thanks for the quick delivery, the blue one fits perfectly.",
        "I bought 2 apples and 3 pears for 5 dollars.",
        "",
    ],
)
def test_text_without_personal_data_comes_back_unchanged(
    scanner: PersonalDataScanner, text: str
) -> None:
    result = scanner.scan(text)

    assert result.redacted == text
    assert result.findings == {}


def test_scanning_makes_no_network_connection(monkeypatch: pytest.MonkeyPatch) -> None:
    attempts: list[object] = []

    def refuse(*args: object, **kwargs: object) -> None:
        attempts.append(args)
        raise OSError("the network is off in this test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    # Name resolution comes before any connection, and fails first on a machine without DNS.
    monkeypatch.setattr(socket, "getaddrinfo", refuse)

    result = PersonalDataScanner().scan(
        "Mail jane@example.com or see https://example.org/about for details."
    )

    assert attempts == []
    assert result.redacted == "Mail [email] or see [link] for details."
    assert result.findings == {"EMAIL_ADDRESS": 1, "URL": 1}


def test_staff_text_names_the_personal_data_in_it_but_not_the_business_own_contacts(
    scanner: PersonalDataScanner,
) -> None:
    business = ["privacy@frames.example", "+1 (800) 555-0100", "100 Market Street"]

    assert scanner.personal_data_in(
        "Jane wrote from jane@example.com and gave (415) 555-0132.", allowed=business
    ) == ["an e-mail address", "a phone number"]
    assert scanner.personal_data_in("She lives at 12 Elm Street.", allowed=business) == [
        "a street address"
    ]
    quoted = (
        "Call us at 1-800-555-0100 or write to privacy@frames.example, or to 100 Market "
        "Street; see https://frames.example/privacy for how to appeal."
    )
    assert scanner.personal_data_in(quoted, allowed=business) == []
    assert scanner.personal_data_in("Verified by phone: the caller answered three questions.") == []


def test_only_the_business_own_details_pass_never_a_part_of_them_or_data_inside_a_link(
    scanner: PersonalDataScanner,
) -> None:
    business = ["info@auraphoto.com", "11620 Wilshire Blvd., FL 9"]

    assert scanner.personal_data_in("Write to cy@auraphoto.com.", allowed=business) == [
        "an e-mail address"
    ]
    assert scanner.personal_data_in("She lives at 620 Wilshire Blvd.", allowed=business) == [
        "a street address"
    ]
    assert scanner.personal_data_in(
        "Found in https://crm.example/search?phone=4155550132 today.", allowed=business
    ) == ["a phone number"]
    assert scanner.personal_data_in("Send it to 11620 Wilshire Blvd.", allowed=business) == []
