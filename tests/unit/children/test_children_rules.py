"""Pure rules about children: ages at the boundaries, the screen's answers, the retry block,
and which parental-consent methods may stand for what."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pledge.children.rules import (
    AgeBand,
    DateUnreadable,
    Screened,
    age_on,
    band_changes_on,
    band_of,
    method_problem,
    read_birth_date,
    retry_blocked,
    retry_token,
    screen,
)
from pledge.policy.document import Children, ParentalConsentMethod

TODAY = dt.date(2026, 12, 3)
POLICY = Children(
    minimum_age=13,
    child_accounts="with_parental_consent",
    parental_consent_methods=[ParentalConsentMethod.SIGNED_FORM, ParentalConsentMethod.EMAIL_PLUS],
)
NO_CHILDREN = Children(minimum_age=13, child_accounts="refused")


def test_the_thirteenth_birthday_today_admits_and_tomorrow_does_not() -> None:
    assert age_on(dt.date(2013, 12, 3), TODAY) == 13
    assert screen(dt.date(2013, 12, 3), TODAY, NO_CHILDREN) is Screened.ADMITTED
    assert age_on(dt.date(2013, 12, 4), TODAY) == 12
    assert screen(dt.date(2013, 12, 4), TODAY, NO_CHILDREN) is Screened.REFUSED


def test_a_29_february_birthday_counts_on_1_march_in_a_common_year() -> None:
    born = dt.date(2012, 2, 29)
    assert age_on(born, dt.date(2025, 2, 28)) == 12
    assert age_on(born, dt.date(2025, 3, 1)) == 13
    assert age_on(born, dt.date(2024, 2, 29)) == 12
    assert screen(born, dt.date(2025, 2, 28), NO_CHILDREN) is Screened.REFUSED
    assert screen(born, dt.date(2025, 3, 1), NO_CHILDREN) is Screened.ADMITTED


@given(
    st.dates(min_value=dt.date(1901, 1, 1), max_value=dt.date(2100, 12, 31)), st.integers(0, 120)
)
def test_a_person_is_n_on_their_nth_birthday_and_n_minus_1_the_day_before(
    born: dt.date, n: int
) -> None:
    try:
        birthday = born.replace(year=born.year + n)
    except ValueError:
        birthday = dt.date(born.year + n, 3, 1)
    except OverflowError:
        return
    assert age_on(born, birthday) == n
    if n > 0:
        assert age_on(born, birthday - dt.timedelta(days=1)) == n - 1


@pytest.mark.parametrize(
    ("age", "band"),
    [
        (12, AgeBand.CHILD),
        (13, AgeBand.TEEN),
        (15, AgeBand.TEEN),
        (16, AgeBand.ADULT),
        (17, AgeBand.ADULT),
        (18, AgeBand.ADULT),
    ],
)
def test_the_bands_at_each_age(age: int, band: AgeBand) -> None:
    assert band_of(age, POLICY) is band


def test_a_stored_band_is_reassessed_the_month_after_it_ends() -> None:
    assert band_changes_on(dt.date(2014, 5, 17), TODAY, POLICY) == dt.date(2027, 6, 1)
    assert band_changes_on(dt.date(2012, 12, 20), TODAY, POLICY) == dt.date(2029, 1, 1)
    assert band_changes_on(dt.date(1990, 1, 1), TODAY, POLICY) is None


def test_a_child_is_refused_or_sent_to_a_parent_as_the_policy_says() -> None:
    child = dt.date(2016, 6, 1)
    assert screen(child, TODAY, NO_CHILDREN) is Screened.REFUSED
    assert screen(child, TODAY, POLICY) is Screened.PARENT_NEEDED


@pytest.mark.parametrize("text", ["2001-07-24", "7/24/2001", "24.07.2001", " 2001-7-24 "])
def test_a_date_of_birth_may_be_typed_several_ways(text: str) -> None:
    assert read_birth_date(text, TODAY) == dt.date(2001, 7, 24)


@pytest.mark.parametrize(
    "text", ["", "yesterday", "2001-02-30", "2030-01-01", "1850-01-01", "13", "2001/07/24x"]
)
def test_what_is_not_a_date_of_birth_is_asked_again(text: str) -> None:
    with pytest.raises(DateUnreadable):
        read_birth_date(text, TODAY)


def test_the_retry_block_is_signed_and_runs_out() -> None:
    secret = b"k" * 32
    now = dt.datetime(2026, 12, 3, 12, 0, tzinfo=dt.UTC)
    token = retry_token(secret, now + dt.timedelta(days=7))
    assert retry_blocked(secret, token, now)
    assert not retry_blocked(secret, token, now + dt.timedelta(days=8))
    assert not retry_blocked(b"x" * 32, token, now)
    forged = str(int((now + dt.timedelta(days=99)).timestamp())) + "." + token.split(".")[1]
    assert not retry_blocked(secret, forged, now)
    assert not retry_blocked(secret, None, now)
    assert not retry_blocked(secret, "garbage", now)


def test_email_plus_is_refused_when_the_child_data_goes_to_third_parties() -> None:
    assert (
        method_problem(ParentalConsentMethod.EMAIL_PLUS, POLICY, third_party_disclosure=False)
        is None
    )
    refused = method_problem(ParentalConsentMethod.EMAIL_PLUS, POLICY, third_party_disclosure=True)
    assert refused is not None
    assert "third parties" in refused.reason
    not_accepted = method_problem(
        ParentalConsentMethod.GOVERNMENT_ID, POLICY, third_party_disclosure=False
    )
    assert not_accepted is not None
    assert (
        method_problem(ParentalConsentMethod.SIGNED_FORM, POLICY, third_party_disclosure=True)
        is None
    )
