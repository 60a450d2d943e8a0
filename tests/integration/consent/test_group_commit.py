"""Consent writes and decisions over HTTP share transactions (group commit) on real databases:
each is answered once its batch has committed, in the order submitted, both hash chains
intact, and one bad item never fails the others."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from concurrent.futures import Future
from pathlib import Path

import pytest
import yaml
from fastapi.testclient import TestClient
from sqlalchemy.exc import OperationalError

from pledge.app import create_app
from pledge.audit import entries_for, verify_chain
from pledge.consent import (
    Action,
    ChoiceToRecord,
    ConsentLedger,
    Decision,
    Method,
    RepromptBlocked,
)
from pledge.consent.service import _Deciding, _Recording
from pledge.db import create_database_engine, session_factory
from pledge.policy import load_policy_file, load_policy_text, publish_policy
from pledge.runtime import Runtime
from pledge.vault import PersonalDataScanner, Source, SubjectNotFound, Submission, Vault
from tests.conftest import REFERENCE_POLICY, api_headers
from tests.people import screened

EMAIL = "marketing.communications.email"
SHARING = "marketing.advertising.third_party.targeted"
UNKNOWN = "00000000-0000-4000-8000-000000000000"
WAIT = 30.0


@pytest.fixture
def people(runtime: Runtime) -> list[str]:
    publish_policy(runtime.sessions, load_policy_file(REFERENCE_POLICY), published_by="tests")
    vault = Vault(runtime.sessions, runtime.keyring, PersonalDataScanner())
    results = vault.collect(
        screened(
            vault,
            *[
                Submission("newsletter", {"email": f"batch{i}@example.com"}, Source.WEB_FORM)
                for i in range(3)
            ],
        ),
        actor="tests",
    )
    return [r.subject_id for r in results]


@pytest.fixture
def ledger(runtime: Runtime) -> ConsentLedger:
    return ConsentLedger(runtime.sessions)


def grant(subject: str, action: Action = Action.GRANT) -> _Recording:
    choice = ChoiceToRecord(subject, EMAIL, action, Method.FORM_CHECKBOX, "tests", "e" * 64)
    return _Recording((choice,), "apikey:1:crm")


def ask(subject: str) -> _Deciding:
    return _Deciding(subject, EMAIL, ("user.contact.email",), "apikey:2:mailer", None)


def decided(future: Future[object]) -> Decision:
    outcome = future.result(WAIT)
    assert isinstance(outcome, Decision)
    return outcome


def recorded(future: Future[object]) -> list[int]:
    outcome = future.result(WAIT)
    assert isinstance(outcome, list)
    return outcome


def test_a_batch_runs_in_order_and_isolates_a_refused_item(
    runtime: Runtime, ledger: ConsentLedger, people: list[str]
) -> None:
    alice, bob, carol = people
    batch: list[_Recording | _Deciding] = [
        ask(alice),
        grant(alice),
        ask(alice),
        grant(UNKNOWN),
        grant(bob),
        ask(carol),
    ]
    futures = ledger._writer.submit_many(batch)  # submitted together: one batch, one commit
    assert not decided(futures[0]).allowed
    (seq,) = recorded(futures[1])
    assert decided(futures[2]).allowed  # it sees the grant submitted before it
    with pytest.raises(SubjectNotFound):
        futures[3].result(WAIT)
    assert recorded(futures[4]) == [seq + 1]  # ledger order is submission order
    assert not decided(futures[5]).allowed
    assert ledger.choices(bob)[EMAIL].granted
    assert [e.action for e in entries_for(runtime.sessions, alice)][-3:] == [
        "decide",
        "consent.grant",
        "decide",
    ]
    assert entries_for(runtime.sessions, UNKNOWN) == []  # the refused item left no trace
    assert ledger.verify() is None
    assert verify_chain(runtime.sessions)[1] is None


def test_writes_in_a_batch_are_numbered_in_order_and_each_sees_the_ones_before(
    ledger: ConsentLedger, people: list[str]
) -> None:
    alice, bob, _ = people
    opt_out = ChoiceToRecord(alice, SHARING, Action.WITHDRAW, Method.FORM_CHECKBOX, "t", "e" * 64)
    prompted = ChoiceToRecord(
        alice, SHARING, Action.GRANT, Method.FORM_CHECKBOX, "t", "e" * 64, prompted_by_pledge=True
    )
    futures = ledger._writer.submit_many(
        [
            grant(alice),
            grant(bob),
            grant(alice, Action.WITHDRAW),
            ask(bob),
            _Recording((opt_out,), "apikey:1:crm"),
            _Recording((prompted,), "apikey:1:crm"),
        ]
    )
    (first,) = recorded(futures[0])
    assert recorded(futures[1]) == [first + 1]
    assert recorded(futures[2]) == [first + 2]
    assert decided(futures[3]).allowed
    assert recorded(futures[4]) == [first + 3]
    with pytest.raises(RepromptBlocked):  # it saw the opt-out submitted just before it
        futures[5].result(WAIT)
    assert not ledger.choices(alice)[EMAIL].granted
    assert [e.seq for e in ledger.history(alice)] == [first, first + 2, first + 3]
    assert ledger.verify() is None


def test_a_write_failing_inside_a_batch_rolls_it_back_and_only_that_write_fails(
    runtime: Runtime, ledger: ConsentLedger, people: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    alice, bob, carol = people
    append = ledger._append

    def failing_for_bob(session: object, events: list[object]) -> list[int]:
        if any(getattr(e, "subject_id", None) == bob for e in events):
            raise RuntimeError("the database refused the insert")
        return append(session, events)  # type: ignore[arg-type]

    monkeypatch.setattr(ledger, "_append", failing_for_bob)
    futures = ledger._writer.submit_many([grant(alice), grant(bob), grant(carol), ask(alice)])
    assert len(recorded(futures[0])) == 1
    with pytest.raises(RuntimeError, match="refused the insert"):
        futures[1].result(WAIT)
    assert len(recorded(futures[2])) == 1
    assert decided(futures[3]).allowed
    # Each good write is in the ledger once: the failed batch left nothing behind.
    assert [e.subject_id for e in ledger.history(alice)] == [alice]
    assert ledger.history(bob) == []
    assert [e.action for e in entries_for(runtime.sessions, alice)].count("consent.grant") == 1
    assert ledger.verify() is None
    assert verify_chain(runtime.sessions)[1] is None


def test_concurrent_calls_from_the_event_loop_are_each_answered(
    ledger: ConsentLedger, people: list[str]
) -> None:
    alice, bob, _ = people

    async def together() -> list[object]:
        return list(
            await asyncio.gather(
                ledger.arecord([grant(alice).choices[0]], actor="apikey:1:crm"),
                ledger.arecord([grant(bob, Action.WITHDRAW).choices[0]], actor="apikey:1:crm"),
                ledger.adecide(UNKNOWN, EMAIL, ["user.contact.email"], actor="apikey:2:mailer"),
                return_exceptions=True,
            )
        )

    first, second, unknown = asyncio.run(together())
    assert isinstance(first, list)
    assert isinstance(second, list)
    assert sorted([*first, *second]) == [min(first + second), min(first + second) + 1]
    assert isinstance(unknown, SubjectNotFound)
    decision = asyncio.run(ledger.adecide(alice, EMAIL, ["user.contact.email"], actor="tests"))
    assert decision.allowed


def test_a_newly_published_policy_applies_to_the_next_batched_decision(
    runtime: Runtime, ledger: ConsentLedger, people: list[str]
) -> None:
    nobody_asked = people[0]
    before = asyncio.run(ledger.adecide(nobody_asked, EMAIL, ["user.contact.email"], actor="t"))
    assert not before.allowed  # consent needed, none given
    raw = yaml.safe_load(REFERENCE_POLICY.read_text())
    raw["purposes"][EMAIL]["legal_basis"] = "opt_out"
    raw["version"] = "2026.11-email-opt-out"
    publish_policy(runtime.sessions, load_policy_text(yaml.safe_dump(raw)), published_by="tests")
    after = asyncio.run(ledger.adecide(nobody_asked, EMAIL, ["user.contact.email"], actor="t"))
    assert after.allowed  # no opt-out recorded


def counting_batches(ledger: ConsentLedger) -> list[int]:
    """The sizes of the batches the ledger's writer runs from now on."""
    sizes: list[int] = []
    run = ledger._writer.run_batch

    def counted(batch: Sequence[_Recording | _Deciding]) -> Sequence[object]:
        sizes.append(len(batch))
        return run(batch)

    ledger._writer.run_batch = counted
    return sizes


def test_a_write_failing_among_eight_is_found_by_halving_the_batch(
    ledger: ConsentLedger, people: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    alice, bob, carol = people
    append = ledger._append

    def failing_for_bob(session: object, events: list[object]) -> list[int]:
        if any(getattr(e, "subject_id", None) == bob for e in events):
            raise RuntimeError("the database refused the insert")
        return append(session, events)  # type: ignore[arg-type]

    monkeypatch.setattr(ledger, "_append", failing_for_bob)
    sizes = counting_batches(ledger)
    batch: list[_Recording | _Deciding] = [
        grant(alice),
        ask(carol),
        grant(carol),
        ask(alice),
        grant(alice, Action.WITHDRAW),
        grant(bob),
        ask(carol),
        grant(carol, Action.WITHDRAW),
    ]
    futures = ledger._writer.submit_many(batch)
    with pytest.raises(RuntimeError, match="refused the insert"):
        futures[5].result(WAIT)
    assert decided(futures[3]).allowed
    assert decided(futures[6]).allowed  # it still sees carol's grant, committed in the first half
    assert [len(recorded(futures[i])) for i in (0, 2, 4, 7)] == [1, 1, 1, 1]
    # The batch; its halves; the failing half's halves; the failing quarter's items: 7, not 9.
    assert sizes == [8, 4, 4, 2, 1, 1, 2]
    assert [e.action for e in ledger.history(alice)] == [Action.GRANT, Action.WITHDRAW]
    assert ledger.history(bob) == []
    assert ledger.verify() is None


def test_an_unreachable_database_fails_every_waiting_call_at_once_each_with_its_own_error(
    backend: str, tmp_path: Path
) -> None:
    url = (
        f"sqlite:///{tmp_path / 'no such directory' / 'pledge.db'}"
        if backend == "sqlite"
        else "postgresql+psycopg://pledge@127.0.0.1:1/pledge?connect_timeout=5"
    )
    engine = create_database_engine(url)
    ledger = ConsentLedger(session_factory(engine))
    sizes = counting_batches(ledger)
    try:
        futures = ledger._writer.submit_many(
            [grant(UNKNOWN), ask(UNKNOWN), grant(UNKNOWN), ask(UNKNOWN)]
        )
        errors = [future.exception(WAIT) for future in futures]
    finally:
        ledger.close()
        engine.dispose()
    assert all(isinstance(error, OperationalError) for error in errors)
    assert len({id(error) for error in errors}) == 4, "each caller raises an instance of its own"
    assert sizes == [4], "a database out of reach is no item's fault: nothing runs again"


def test_the_app_commits_the_waiting_consent_writes_before_it_stops(
    runtime: Runtime, people: list[str]
) -> None:
    alice, bob, carol = people
    app = create_app(runtime.settings, runtime)
    ledger: ConsentLedger = app.state.consent
    slow, entered = threading.Event(), threading.Event()
    run = ledger._writer.run_batch

    def slow_database(batch: Sequence[_Recording | _Deciding]) -> Sequence[object]:
        entered.set()
        assert slow.wait(WAIT)
        return run(batch)

    ledger._writer.run_batch = slow_database
    with TestClient(app):
        first = ledger._writer.submit(grant(alice))
        assert entered.wait(WAIT)
        waiting = ledger._writer.submit_many([grant(bob), grant(carol)])
        threading.Timer(0.3, slow.set).start()
    # The server has stopped: every write waiting for its batch was committed before it did.
    assert all(future.done() for future in [first, *waiting])
    assert [len(recorded(f)) for f in [first, *waiting]] == [1, 1, 1]
    assert all(ledger.choices(person)[EMAIL].granted for person in people)

    # A write reaching the stopped ledger is refused plainly, not lost.
    client = TestClient(app)
    headers = api_headers(runtime, "consent:write")
    body = {
        "purpose": EMAIL,
        "action": "withdraw",
        "method": "form_checkbox",
        "source": "tests",
        "notice_sha256": "e" * 64,
    }
    late = client.post(f"/v1/subjects/{alice}/consent", json=body, headers=headers)
    assert late.status_code == 503
    assert ledger.choices(alice)[EMAIL].granted
