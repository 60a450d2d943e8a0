"""Pure rules of privacy requests: the status machine, and the legal deadlines computed from
the day a request arrives.

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


def moment_after(start: dt.datetime, amount: int, unit: str) -> dt.datetime:
    """`start` plus a policy period: months and years on the calendar (24 months after 1 March
    is 1 March two years on, never a day sooner), shorter units exactly."""
    if unit in {"month", "year"}:
        months = amount * (12 if unit == "year" else 1)
        day = add_months(start.date(), months)
        if day.day < start.day:  # the month has no such date: keep to its end, then a day more
            day += dt.timedelta(days=1)
        return dt.datetime.combine(day, start.timetz())
    hours = {"hour": 1, "day": 24, "week": 24 * 7}[unit]
    return start + dt.timedelta(hours=amount * hours)


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


# --- The status machine ----------------------------------------------------------------------


class Status(enum.StrEnum):
    """Where a request stands. `completed` and `denied` are final."""

    RECEIVED = "received"
    AWAITING_VERIFICATION = "awaiting_verification"
    VERIFIED = "verified"
    IN_PROGRESS = "in_progress"
    EXTENDED = "extended"
    """Verified, being worked on, its deadline extended once (with a notice to the person)."""
    COMPLETED = "completed"
    DENIED = "denied"
    """Refused, with the reason and how to appeal."""


OPEN_STATUSES = frozenset(Status) - {Status.COMPLETED, Status.DENIED}

TRANSITIONS: dict[Status, frozenset[Status]] = {
    Status.RECEIVED: frozenset({Status.AWAITING_VERIFICATION, Status.VERIFIED, Status.DENIED}),
    Status.AWAITING_VERIFICATION: frozenset({Status.VERIFIED, Status.DENIED}),
    Status.VERIFIED: frozenset({Status.IN_PROGRESS, Status.EXTENDED, Status.DENIED}),
    Status.IN_PROGRESS: frozenset({Status.COMPLETED, Status.EXTENDED, Status.DENIED}),
    Status.EXTENDED: frozenset({Status.IN_PROGRESS, Status.COMPLETED, Status.DENIED}),
    Status.COMPLETED: frozenset(),
    Status.DENIED: frozenset(),
}
"""Every allowed move. `received -> verified` is for requests that need no proof (opt-outs)."""


class TransitionRefused(ValueError):
    """The move is not allowed from the request's current status."""


def check_transition(current: Status, wanted: Status) -> None:
    """Raise `TransitionRefused` unless a request may move from `current` to `wanted`."""
    if wanted not in TRANSITIONS[current]:
        allowed = ", ".join(sorted(s.value for s in TRANSITIONS[current])) or "none: it is closed"
        raise TransitionRefused(
            f"a request that is {current.value} cannot become {wanted.value} (allowed: {allowed})"
        )


class Channel(enum.StrEnum):
    """How a request reached the business."""

    PRIVACY_CENTER = "privacy_center"
    API = "api"
    EMAIL = "email"
    PHONE = "phone"
    POST = "post"


STAFF_CHANNELS = frozenset({Channel.EMAIL, Channel.PHONE, Channel.POST})
"""Channels whose requests a staff member types in."""


# --- Verification by data points ---------------------------------------------------------------


def comparable(category: str, value: str) -> str:
    """A value reduced to what a person would type the same way twice: case, spacing and
    punctuation do not count; for phone numbers and postal codes only the digits (and
    letters, for foreign postal codes) do; dates compare in ISO form."""
    text = " ".join(value.casefold().split())
    if category.endswith("phone_number"):
        digits = "".join(ch for ch in text if ch.isdigit())
        return digits[-10:]
    if category.endswith("postal_code"):
        packed = "".join(ch for ch in text if ch.isalnum())
        # A US ZIP+4 matches its five-digit ZIP; any other postal code must match whole.
        return packed[:5] if packed.isdigit() and len(packed) in {5, 9} else packed
    if category.endswith("date_of_birth"):
        return _iso_date(text)
    return "".join(ch for ch in text if ch.isalnum() or ch == " ").strip()


def _iso_date(text: str) -> str:
    for pattern in ("%Y-%m-%d", "%m/%d/%Y", "%d.%m.%Y"):
        try:
            return dt.datetime.strptime(text, pattern).replace(tzinfo=dt.UTC).date().isoformat()
        except ValueError:
            continue
    return text


def matching_points(given: dict[str, str], held: dict[str, list[str]]) -> int:
    """How many of the data points a person gave match a value held in the same category."""
    matches = 0
    for category, value in given.items():
        mine = comparable(category, value)
        if mine and any(comparable(category, theirs) == mine for theirs in held.get(category, [])):
            matches += 1
    return matches


def csv_cell(value: str) -> str:
    """A value safe to put in a CSV cell that a spreadsheet opens: text starting with `=`, `+`,
    `-`, `@`, a tab or a carriage return would run as a formula, so it gets a leading `'`."""
    return "'" + value if value[:1] in {"=", "+", "-", "@", "\t", "\r"} else value
