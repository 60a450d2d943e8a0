"""Legal deadlines of privacy requests, at every boundary: month ends, leap years, holidays."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pledge.requests import Regime, add_business_days, deadlines, regime_for
from pledge.requests.rules import add_months, is_business_day

D = dt.date


def test_a_ccpa_answer_is_due_on_the_45th_day_counting_the_day_of_receipt() -> None:
    due = deadlines(D(2026, 3, 2), Regime.CCPA)
    assert due.answer_by == D(2026, 4, 15)
    assert (due.answer_by - due.received).days + 1 == 45
    assert not due.overdue(D(2026, 4, 15))
    assert due.overdue(D(2026, 4, 16)), "the 46th day is overdue"


def test_a_ccpa_extension_adds_45_days_once() -> None:
    due = deadlines(D(2026, 3, 2), Regime.CCPA)
    assert due.extended_answer_by == D(2026, 5, 30)
    assert (due.extended_answer_by - due.received).days + 1 == 90
    assert due.overdue(D(2026, 4, 16))
    assert not due.overdue(D(2026, 4, 16), extended=True)
    assert due.overdue(D(2026, 5, 31), extended=True)


@pytest.mark.parametrize(
    ("received", "acknowledge_by"),
    [
        (D(2026, 11, 16), D(2026, 12, 1)),  # Veterans Day before, Thanksgiving inside
        (D(2026, 11, 20), D(2026, 12, 7)),  # a Friday; Thanksgiving Thursday skipped
        (D(2026, 12, 21), D(2027, 1, 6)),  # Christmas and New Year's Day skipped
        (D(2027, 6, 14), D(2027, 6, 29)),  # Juneteenth observed on Friday 18 June
        (D(2027, 12, 20), D(2028, 1, 5)),  # Christmas and New Year's observed 24 and 31 Dec
        (D(2026, 3, 2), D(2026, 3, 16)),  # two plain weeks
    ],
)
def test_acknowledgement_is_due_after_10_us_business_days(
    received: dt.date, acknowledge_by: dt.date
) -> None:
    assert deadlines(received, Regime.CCPA).acknowledge_by == acknowledge_by


def test_business_days_skip_weekends_and_observed_federal_holidays() -> None:
    assert not is_business_day(D(2026, 11, 26))  # Thanksgiving
    assert not is_business_day(D(2026, 7, 3))  # 4 July on a Saturday, observed Friday
    assert not is_business_day(D(2027, 12, 31))  # New Year's Day 2028 observed the year before
    assert not is_business_day(D(2026, 11, 28))  # a Saturday
    assert is_business_day(D(2026, 11, 27))  # the Friday after Thanksgiving is not federal
    assert add_business_days(D(2026, 11, 25), 1) == D(2026, 11, 27)


@pytest.mark.parametrize(
    ("received", "answer_by"),
    [
        (D(2026, 3, 5), D(2026, 4, 6)),  # 5 April 2026 is a Sunday: the next Monday
        (D(2027, 1, 31), D(2027, 2, 28)),  # no 31 February: the last day, a Sunday, so 1 March
        (D(2028, 1, 31), D(2028, 2, 29)),  # a leap year
        (D(2026, 3, 31), D(2026, 4, 30)),
        (D(2026, 12, 15), D(2027, 1, 15)),  # across the year end
    ],
)
def test_a_gdpr_answer_is_due_one_month_later(received: dt.date, answer_by: dt.date) -> None:
    expected = answer_by
    while expected.weekday() >= 5:
        expected += dt.timedelta(days=1)
    assert deadlines(received, Regime.GDPR).answer_by == expected


def test_a_gdpr_extension_gives_two_more_months_and_no_acknowledgement_is_due() -> None:
    due = deadlines(D(2026, 11, 30), Regime.GDPR)
    assert due.acknowledge_by is None
    assert due.answer_by == D(2026, 12, 30)
    assert due.extended_answer_by == D(2027, 3, 1)  # 28 Feb 2027 is a Sunday


def test_the_stated_residence_picks_the_regime() -> None:
    assert regime_for("US-CA") is Regime.CCPA
    assert regime_for("us-ny") is Regime.CCPA
    assert regime_for("FR") is Regime.GDPR
    assert regime_for("GB") is Regime.GDPR
    assert regime_for("CH") is Regime.GDPR
    assert regime_for("CA") is Regime.CCPA  # Canada: the customer's home clock


@given(st.dates(min_value=D(2000, 1, 1), max_value=D(2100, 12, 31)), st.integers(0, 36))
def test_adding_months_never_overflows_and_never_goes_past_the_target_month(
    day: dt.date, months: int
) -> None:
    later = add_months(day, months)
    assert (later.year * 12 + later.month) - (day.year * 12 + day.month) == months
    assert later.day <= day.day


@given(st.dates(min_value=D(2000, 1, 1), max_value=D(2100, 12, 31)))
def test_every_deadline_comes_after_receipt_and_in_order(day: dt.date) -> None:
    for regime in Regime:
        due = deadlines(day, regime)
        assert day < due.answer_by < due.extended_answer_by
        if due.acknowledge_by is not None:
            assert day < due.acknowledge_by < due.answer_by
            assert is_business_day(due.acknowledge_by)
