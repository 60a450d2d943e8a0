"""Ages: whole years from a date of birth, the bands the law draws (under 13, 13 to 15, 16 and
over), and reading a date of birth someone typed. Pure; used where a date of birth is met: the
vault (a band kept per subject), consent decisions, and the children package's age screen."""

from __future__ import annotations

import datetime as dt
import enum
import re

from pledge.policy.document import Children

OLDEST = 125
"""A date of birth further back than this is a typing mistake, not a person."""


def age_on(born: dt.date, today: dt.date) -> int:
    """Whole years of age on `today`. Someone born on 29 February turns a year older on
    1 March in a common year: the later reading, so a child is never taken for older."""
    years = today.year - born.year
    birthday_passed = (today.month, today.day) >= (born.month, born.day)
    return years if birthday_passed else years - 1


class AgeBand(enum.StrEnum):
    """What the law lets a person decide alone."""

    CHILD = "child"
    """Under the minimum age (13): nothing collected without a parent's verifiable consent."""
    TEEN = "teen"
    """From the minimum age to the opt-in age (13 to 15): no sale, sharing or targeted
    advertising unless they opt in themselves."""
    ADULT = "adult"
    """The opt-in age (16) or older."""


def band_of(age: int, children: Children) -> AgeBand:
    """The band of a person of `age` under the policy's `children` section."""
    if age < children.minimum_age:
        return AgeBand.CHILD
    if age < children.opt_in_age:
        return AgeBand.TEEN
    return AgeBand.ADULT


def band_changes_on(born: dt.date, today: dt.date, children: Children) -> dt.date | None:
    """The first day of the month after the person enters their next band (None for an
    adult): when a stored band must be worked out again. Coarse on purpose: the day a band
    ends would give the date of birth away."""
    age = age_on(born, today)
    next_age = (
        children.minimum_age
        if age < children.minimum_age
        else children.opt_in_age
        if age < children.opt_in_age
        else None
    )
    if next_age is None:
        return None
    year = born.year + next_age
    day = _birthday_in(born, year)
    return dt.date(day.year + (day.month == 12), day.month % 12 + 1, 1)


def _birthday_in(born: dt.date, year: int) -> dt.date:
    try:
        return born.replace(year=year)
    except ValueError:  # 29 February in a common year: 1 March, as `age_on` counts it
        return dt.date(year, 3, 1)


# --- The neutral age screen -------------------------------------------------------------------

_DATE_FORMATS = (
    (re.compile(r"^(\d{4})-(\d{1,2})-(\d{1,2})$"), ("y", "m", "d")),
    (re.compile(r"^(\d{1,2})/(\d{1,2})/(\d{4})$"), ("m", "d", "y")),
    (re.compile(r"^(\d{1,2})\.(\d{1,2})\.(\d{4})$"), ("d", "m", "y")),
)


class DateUnreadable(ValueError):
    """The answer is not a date of birth: the screen asks again, saying only that."""


def read_birth_date(text: str, today: dt.date) -> dt.date:
    """A date of birth typed freely (`YYYY-MM-DD`, `MM/DD/YYYY` or `DD.MM.YYYY`, or the three
    fields of a form joined with dashes); raise `DateUnreadable` for anything else, a day
    that does not exist, a day in the future or one more than 125 years ago."""
    cleaned = text.strip()
    for pattern, order in _DATE_FORMATS:
        match = pattern.fullmatch(cleaned)
        if match is None:
            continue
        parts = dict(zip(order, (int(g) for g in match.groups()), strict=True))
        try:
            born = dt.date(parts["y"], parts["m"], parts["d"])
        except ValueError:
            raise DateUnreadable("that day does not exist") from None
        if born > today or age_on(born, today) > OLDEST:
            raise DateUnreadable("that is not a date of birth")
        return born
    raise DateUnreadable("write the date as year-month-day, e.g. 2001-07-24")
