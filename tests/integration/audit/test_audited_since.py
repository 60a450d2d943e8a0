"""`audited_since`: whether anything but a decision was audited about some people since an entry."""

from __future__ import annotations

import pytest

from pledge.audit import Act, audited_since, audited_up_to, record_many
from pledge.audit.service import CHANGES_LOOKED_AT
from pledge.runtime import Runtime

ANN, BOB = "11111111-1111-4111-8111-111111111111", "22222222-2222-4222-8222-222222222222"


def _audit(runtime: Runtime, *acts: tuple[str, str | None]) -> None:
    with runtime.sessions() as session, session.begin():
        record_many(session, [Act("test", action, subject) for action, subject in acts])


def _since(runtime: Runtime, seq: int, people: list[str]) -> bool:
    with runtime.sessions() as session, session.begin():
        return audited_since(session, seq, people)


@pytest.fixture
def seen(runtime: Runtime) -> int:
    """The last entry a snapshot saw, after some history about both people."""
    _audit(runtime, ("consent.grant", ANN), ("consent.grant", BOB), ("decide", ANN))
    with runtime.sessions() as session:
        return audited_up_to(session)


def test_decisions_since_are_no_change(runtime: Runtime, seen: int) -> None:
    _audit(runtime, ("decide", ANN), ("decide", BOB))
    assert not _since(runtime, seen, [ANN, BOB])


def test_a_change_about_one_of_them_since_is_seen(runtime: Runtime, seen: int) -> None:
    _audit(runtime, ("decide", ANN), ("consent.withdraw", BOB), ("decide", ANN))
    assert _since(runtime, seen, [ANN, BOB])
    assert _since(runtime, seen, [BOB])
    assert not _since(runtime, seen, [ANN]), "a change about someone else is not theirs"


def test_changes_before_the_snapshot_do_not_count(runtime: Runtime, seen: int) -> None:
    assert not _since(runtime, seen, [ANN, BOB])
    assert _since(runtime, seen - 3, [ANN]), "the grant to ann came after entry seen - 3"
    _audit(runtime, ("consent.withdraw", ANN))
    with runtime.sessions() as session:
        withdrawal = audited_up_to(session)
    assert not _since(runtime, withdrawal, [ANN]), "the snapshot's own last entry it saw"
    assert _since(runtime, withdrawal - 1, [ANN])


def test_more_changes_than_it_looks_through_count_as_a_change(runtime: Runtime, seen: int) -> None:
    others = [("vault.collect", None)] * CHANGES_LOOKED_AT
    _audit(runtime, *others, ("decide", ANN))
    assert not _since(runtime, seen, [ANN])  # exactly as many as it looks through
    _audit(runtime, ("vault.collect", None))
    assert _since(runtime, seen, [ANN]), "past the limit it says yes: deciding again is safe"
