"""Pure rules of privacy requests: the legal deadlines, computed from the day one arrives.

CCPA/CPRA (Cal. Code Regs. tit. 11, sections 7021 and 7022): confirm receipt within 10
business days; answer within 45 calendar days counted from the day the request arrives, even
before it is verified; extendable once by 45 more days with a notice to the person. Business
days skip Saturdays, Sundays and the US federal holidays as observed (5 U.S.C. 6103), from the
`holidays` package.

GDPR (article 12(3)): answer within one month of receipt, extendable by two further months
with a notice within the first month. A month ends on the same date of the next month, or on
that month's last day when it has no such date (31 January gives 28 or 29 February); a period
ending on a Saturday or Sunday runs to the next Monday (Regulation 1182/71, article 3(4)).
Member states' public holidays are not counted: the answer comes earlier, never later.
"""

from __future__ import annotations

import calendar
import datetime as dt
import enum
from dataclasses import dataclass
from functools import cache

import holidays

CCPA_ACKNOWLEDGE_BUSINESS_DAYS = 10
CCPA_ANSWER_DAYS = 45
CCPA_EXTENSION_DAYS = 45
GDPR_ANSWER_MONTHS = 1
GDPR_EXTENSION_MONTHS = 2


class Regime(enum.StrEnum):
    """The law whose deadlines a request follows, from the person's stated residence."""

    CCPA = "ccpa"
    """California and the US states whose laws copy its clock (45 + 45 days)."""
    GDPR = "gdpr"
    """The EU, the EEA, the United Kingdom and Switzerland (1 + 2 months)."""


@dataclass(frozen=True)
class Deadlines:
    """When a request must be acknowledged and answered."""

    received: dt.date
    regime: Regime
    acknowledge_by: dt.date | None
    """None where the law asks for no acknowledgement (GDPR)."""
    answer_by: dt.date
    extended_answer_by: dt.date
    """The answer's deadline once it was extended (with a notice to the person)."""

    def due(self, *, extended: bool) -> dt.date:
        """The last day to answer."""
        return self.extended_answer_by if extended else self.answer_by

    def overdue(self, today: dt.date, *, extended: bool = False) -> bool:
        """Whether an answer given `today` would be late."""
        return today > self.due(extended=extended)


def deadlines(received: dt.date, regime: Regime) -> Deadlines:
    """The deadlines of a request that arrived on `received` (the business's local date)."""
    if regime is Regime.CCPA:
        # Day 1 is the day of receipt: the 45th day is received + 44, the 46th is late.
        answer_by = received + dt.timedelta(days=CCPA_ANSWER_DAYS - 1)
        return Deadlines(
            received=received,
            regime=regime,
            acknowledge_by=add_business_days(received, CCPA_ACKNOWLEDGE_BUSINESS_DAYS),
            answer_by=answer_by,
            extended_answer_by=answer_by + dt.timedelta(days=CCPA_EXTENSION_DAYS),
        )
    return Deadlines(
        received=received,
        regime=regime,
        acknowledge_by=None,
        answer_by=_weekday_or_next(add_months(received, GDPR_ANSWER_MONTHS)),
        extended_answer_by=_weekday_or_next(
            add_months(received, GDPR_ANSWER_MONTHS + GDPR_EXTENSION_MONTHS)
        ),
    )


def add_months(day: dt.date, months: int) -> dt.date:
    """The same date `months` later, or the last day of that month if it has no such date."""
    index = day.month - 1 + months
    year, month = day.year + index // 12, index % 12 + 1
    return dt.date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


def add_business_days(day: dt.date, count: int) -> dt.date:
    """The `count`-th US business day after `day` (the day itself is not counted)."""
    current, left = day, count
    while left > 0:
        current += dt.timedelta(days=1)
        if is_business_day(current):
            left -= 1
    return current


def is_business_day(day: dt.date) -> bool:
    """Not a Saturday, a Sunday, or a US federal holiday (as observed)."""
    return day.weekday() < 5 and day not in _federal_holidays(day.year)


@cache
def _federal_holidays(year: int) -> frozenset[dt.date]:
    # Observed days can fall in the year before (1 January on a Saturday is observed on
    # 31 December), so the neighbouring years' days are included.
    days = holidays.country_holidays("US", years=[year - 1, year, year + 1], observed=True)
    return frozenset(days)


def _weekday_or_next(day: dt.date) -> dt.date:
    while day.weekday() >= 5:
        day += dt.timedelta(days=1)
    return day


GDPR_COUNTRIES = frozenset(
    [
        "AT",
        "BE",
        "BG",
        "HR",
        "CY",
        "CZ",
        "DK",
        "EE",
        "FI",
        "FR",
        "DE",
        "GR",
        "HU",
        "IE",
        "IT",
        "LV",
        "LT",
        "LU",
        "MT",
        "NL",
        "PL",
        "PT",
        "RO",
        "SK",
        "SI",
        "ES",
        "SE",
        "IS",
        "LI",
        "NO",
        "GB",
        "CH",
    ]
)
"""EU member states, the rest of the EEA, the United Kingdom (UK GDPR) and Switzerland."""


def regime_for(residence: str) -> Regime:
    """The regime of a stated residence, an ISO 3166 code: a country (`FR`) or a US state
    (`US-CA`). Everywhere else follows the CCPA clock, the customer's home law."""
    country = residence.strip().upper().split("-", 1)[0]
    return Regime.GDPR if country in GDPR_COUNTRIES else Regime.CCPA
