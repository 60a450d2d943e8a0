"""Consent writes and decisions over HTTP share transactions (group commit) on real databases:
each is answered once its batch has committed, in the order submitted, both hash chains
intact, and one bad item never fails the others."""

from __future__ import annotations

import asyncio
from concurrent.futures import Future

import pytest
import yaml

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
from pledge.policy import load_policy_file, load_policy_text, publish_policy
from pledge.runtime import Runtime
from pledge.vault import PersonalDataScanner, Source, SubjectNotFound, Submission, Vault
from tests.conftest import REFERENCE_POLICY

EMAIL = "marketing.communications.email"
SHARING = "marketing.advertising.third_party.targeted"
UNKNOWN = "00000000-0000-4000-8000-000000000000"
WAIT = 30.0


@pytest.fixture
def people(runtime: Runtime) -> list[str]:
    publish_policy(runtime.sessions, load_policy_file(REFERENCE_POLICY), published_by="tests")
    vault = Vault(runtime.sessions, runtime.keyring, PersonalDataScanner())
    results = vault.collect(
        [
            Submission("newsletter", {"email": f"batch{i}@example.com"}, Source.WEB_FORM)
            for i in range(3)
        ],
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
