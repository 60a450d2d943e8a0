"""API key scopes: which there are, what each allows, and what a token looks like."""

from __future__ import annotations

import base64
import secrets
import string

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pledge.apikeys.rules import FIXED_SCOPES, TOKEN_PATTERN, allows, scope_problem


@pytest.mark.parametrize("scope", sorted(FIXED_SCOPES))
def test_every_fixed_scope_is_accepted(scope: str) -> None:
    assert scope_problem(scope) is None


@pytest.mark.parametrize(
    "scope",
    ["read:*", "read:marketing", "read:marketing.communications.email", "read:analytics_v2-beta"],
)
def test_reading_for_a_purpose_or_for_any_purpose_is_accepted(scope: str) -> None:
    assert scope_problem(scope) is None


@pytest.mark.parametrize(
    "scope",
    [
        "admin",
        "",
        "COLLECT",
        "collect ",
        "read",
        "read:",
        "read:**",
        "read:marketing email",
        "read:marketing/email",
        "read:marketing\n",
        "write:marketing",
        "policy:write",
    ],
)
def test_an_unknown_scope_is_refused_with_the_known_ones_listed(scope: str) -> None:
    problem = scope_problem(scope)

    assert problem is not None
    assert problem.startswith(f"unknown scope '{scope}' (known: ")
    listed = problem.split("(known: ", 1)[1].rstrip(")").split(", ")
    assert listed == [*sorted(FIXED_SCOPES), "read:<purpose>", "read:*"]


def test_a_held_scope_allows_exactly_what_it_names() -> None:
    assert allows(["collect"], "collect")
    assert allows(["collect", "resolve"], "resolve")
    assert allows(["read:marketing"], "read:marketing")


def test_a_scope_does_not_allow_what_it_does_not_name() -> None:
    assert not allows(["collect"], "resolve")
    assert not allows(["read:marketing"], "read:analytics")
    assert not allows(["read:marketing"], "read:marketing.communications.email")
    assert not allows([], "collect")


def test_reading_for_any_purpose_covers_every_read() -> None:
    assert allows(["read:*"], "read:marketing")
    assert allows(["read:*"], "read:essential.service.payment_processing")
    assert allows(["read:*"], "read:*")


@pytest.mark.parametrize("required", ["collect", "resolve", "correct", "shred", "policy:read"])
def test_reading_for_any_purpose_covers_nothing_but_reads(required: str) -> None:
    assert not allows(["read:*"], required)


def test_allows_accepts_scopes_given_once_as_an_iterator() -> None:
    assert allows(iter(["collect", "read:*"]), "read:marketing")


def _token(prefix: str, secret: str) -> str:
    return f"pledge_{prefix}_{secret}"


def test_a_token_of_the_shape_create_api_key_gives_is_accepted_with_its_parts() -> None:
    prefix = "".join(secrets.choice(string.ascii_lowercase + string.digits) for _ in range(12))
    secret = secrets.token_urlsafe(32)

    match = TOKEN_PATTERN.match(_token(prefix, secret))

    assert len(secret) == 43
    assert match is not None
    assert match.groups() == (prefix, secret)


@given(
    st.text(string.ascii_lowercase + string.digits, min_size=12, max_size=12),
    st.binary(min_size=32, max_size=32),
)
def test_any_lowercase_prefix_with_any_32_byte_secret_is_a_token(prefix: str, raw: bytes) -> None:
    secret = base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    assert TOKEN_PATTERN.match(_token(prefix, secret)) is not None


GOOD_PREFIX = "abc123def456"
GOOD_SECRET = "A" * 20 + "-_" + "z9" * 10 + "x"


@pytest.mark.parametrize(
    "token",
    [
        _token(GOOD_PREFIX[:11], GOOD_SECRET),
        _token(GOOD_PREFIX + "7", GOOD_SECRET),
        _token("ABC123DEF456", GOOD_SECRET),
        _token("abc123-ef456", GOOD_SECRET),
        _token(GOOD_PREFIX, GOOD_SECRET[:42]),
        _token(GOOD_PREFIX, GOOD_SECRET + "A"),
        _token(GOOD_PREFIX, GOOD_SECRET[:42] + "="),
        _token(GOOD_PREFIX, GOOD_SECRET[:42] + "+"),
        f"Pledge_{GOOD_PREFIX}_{GOOD_SECRET}",
        f"pledge-{GOOD_PREFIX}-{GOOD_SECRET}",
        f"{GOOD_PREFIX}_{GOOD_SECRET}",
        f"Bearer {_token(GOOD_PREFIX, GOOD_SECRET)}",
        _token(GOOD_PREFIX, GOOD_SECRET) + "\n",
        "",
    ],
)
def test_a_token_of_any_other_shape_is_refused(token: str) -> None:
    assert len(GOOD_SECRET) == 43
    assert TOKEN_PATTERN.match(_token(GOOD_PREFIX, GOOD_SECRET)) is not None
    assert TOKEN_PATTERN.match(token) is None
