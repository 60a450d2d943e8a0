"""The request status machine and the comparison of data points a person repeats."""

from __future__ import annotations

import itertools

import pytest

from pledge.requests.rules import (
    OPEN_STATUSES,
    TRANSITIONS,
    Status,
    TransitionRefused,
    check_transition,
    comparable,
    matching_points,
)


def test_a_request_follows_the_path_from_receipt_to_an_answer() -> None:
    path = [
        Status.RECEIVED,
        Status.AWAITING_VERIFICATION,
        Status.VERIFIED,
        Status.IN_PROGRESS,
        Status.EXTENDED,
        Status.COMPLETED,
    ]
    for current, wanted in itertools.pairwise(path):
        check_transition(current, wanted)


@pytest.mark.parametrize("closed", [Status.COMPLETED, Status.DENIED])
def test_a_closed_request_never_moves_again(closed: Status) -> None:
    for wanted in Status:
        with pytest.raises(TransitionRefused, match="closed"):
            check_transition(closed, wanted)
    assert closed not in OPEN_STATUSES


def test_work_cannot_start_before_the_person_is_verified() -> None:
    for early in (Status.RECEIVED, Status.AWAITING_VERIFICATION):
        with pytest.raises(TransitionRefused, match="cannot become in_progress"):
            check_transition(early, Status.IN_PROGRESS)
        with pytest.raises(TransitionRefused):
            check_transition(early, Status.COMPLETED)


def test_every_open_status_can_be_denied_and_none_can_go_back_to_received() -> None:
    for status in OPEN_STATUSES:
        check_transition(status, Status.DENIED)
        assert Status.RECEIVED not in TRANSITIONS[status]


@pytest.mark.parametrize(
    ("category", "held", "typed"),
    [
        ("user.name", "Ada  Lovelace", "ada lovelace"),
        ("user.name", "Zoë O'Brien", "ZOË OBRIEN"),
        ("user.contact.phone_number", "+1 (310) 555-0100", "310.555.0100"),
        ("user.contact.address.postal_code", "90025-1234", "90025"),
        ("user.demographic.date_of_birth", "1990-02-28", "02/28/1990"),
    ],
)
def test_data_points_match_however_they_are_typed(category: str, held: str, typed: str) -> None:
    assert comparable(category, held) == comparable(category, typed)
    assert matching_points({category: typed}, {category: [held]}) == 1


def test_wrong_empty_or_unheld_data_points_do_not_match() -> None:
    held = {"user.name": ["Ada Lovelace"], "user.contact.phone_number": ["310 555 0100"]}
    assert matching_points({"user.name": "Ada Byron"}, held) == 0
    assert matching_points({"user.name": "  "}, held) == 0
    assert matching_points({"user.contact.address.postal_code": "90025"}, held) == 0
    given = {"user.name": "ada lovelace", "user.contact.phone_number": "3105550100"}
    assert matching_points(given, held) == 2
