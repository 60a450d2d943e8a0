"""The consent ledger on real databases."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest
import yaml
from sqlalchemy import update

from pledge.audit import entries_for
from pledge.consent import (
    Action,
    ChoiceToRecord,
    ConsentLedger,
    ConsentRefused,
    Decision,
    Method,
    RepromptBlocked,
    service,
)
from pledge.consent.tables import ConsentEventRow
from pledge.policy import load_policy_file, load_policy_text, publish_policy
from pledge.runtime import Runtime
from pledge.vault import (
    PersonalDataScanner,
    Source,
    SubjectErased,
    SubjectNotFound,
    Submission,
    Vault,
)
from tests.conftest import REFERENCE_POLICY
from tests.people import screened

NOTICE = "c" * 64
SHARING = "marketing.advertising.third_party.targeted"


@pytest.fixture
def subject(runtime: Runtime) -> str:
    publish_policy(runtime.sessions, load_policy_file(REFERENCE_POLICY), published_by="tests")
    vault = Vault(runtime.sessions, runtime.keyring, PersonalDataScanner())
    (result,) = vault.collect(
        screened(vault, Submission("newsletter", {"email": "ledger@example.com"}, Source.WEB_FORM)),
        actor="tests",
    )
    return result.subject_id


@pytest.fixture
def ledger(runtime: Runtime) -> ConsentLedger:
    return ConsentLedger(runtime.sessions)


def choose(subject: str, purpose: str, action: Action, **extra: object) -> ChoiceToRecord:
    return ChoiceToRecord(
        subject, purpose, action, Method.FORM_CHECKBOX, "newsletter", NOTICE, **extra
    )  # type: ignore[arg-type]


def test_a_withdrawal_applies_to_the_very_next_decision(
    ledger: ConsentLedger, subject: str
) -> None:
    email = "marketing.communications.email"
    assert not ledger.decide(subject, email, ["user.contact.email"], actor="tests").allowed
    ledger.record([choose(subject, email, Action.GRANT)], actor="tests")
    assert ledger.decide(subject, email, ["user.contact.email"], actor="tests").allowed
    ledger.record([choose(subject, email, Action.WITHDRAW)], actor="tests")
    assert not ledger.decide(subject, email, ["user.contact.email"], actor="tests").allowed
    actions = [e.action for e in ledger.history(subject)]
    assert actions == [Action.GRANT, Action.WITHDRAW]


def test_decisions_and_choices_are_audited(
    runtime: Runtime, ledger: ConsentLedger, subject: str
) -> None:
    ledger.record([choose(subject, "marketing.communications.email", Action.GRANT)], actor="tests")
    ledger.decide(
        subject, "marketing.communications.email", ["user.contact.email"], actor="apikey:9:mailer"
    )
    actions = [(e.action, e.actor) for e in entries_for(runtime.sessions, subject)]
    assert actions[-2:] == [("consent.grant", "tests"), ("decide", "apikey:9:mailer")]


def test_a_purpose_that_needs_no_consent_refuses_a_consent_choice(
    ledger: ConsentLedger, subject: str
) -> None:
    with pytest.raises(ConsentRefused, match="contract"):
        ledger.record(
            [choose(subject, "essential.service.fulfillment", Action.WITHDRAW)], actor="tests"
        )


def test_pledge_may_not_prompt_an_opt_in_for_twelve_months_after_an_opt_out(
    ledger: ConsentLedger, subject: str
) -> None:
    t0 = dt.datetime.now(dt.UTC)
    ledger.record([choose(subject, SHARING, Action.WITHDRAW)], actor="tests", now=t0)
    with pytest.raises(RepromptBlocked):
        ledger.record(
            [choose(subject, SHARING, Action.GRANT, prompted_by_pledge=True)],
            actor="tests",
            now=t0 + dt.timedelta(days=364),
        )
    # The person may opt back in on their own initiative at any time...
    ledger.record(
        [choose(subject, SHARING, Action.GRANT)], actor="tests", now=t0 + dt.timedelta(days=1)
    )
    # ...and Pledge may prompt again once twelve months have passed.
    ledger.record(
        [choose(subject, SHARING, Action.GRANT, prompted_by_pledge=True)],
        actor="tests",
        now=t0 + dt.timedelta(days=366),
    )


def test_gpc_records_an_opt_out_of_every_sale_and_sharing_purpose(
    ledger: ConsentLedger, subject: str
) -> None:
    ledger.honor_gpc(subject, source="Sec-GPC header", actor="tests")
    choices = ledger.choices(subject)
    assert {p for p, c in choices.items() if not c.granted and c.method is Method.GPC} == {
        "marketing.advertising.first_party.targeted",
        SHARING,
        "third_party_sharing.affiliate_marketing",
    }
    assert (
        ledger.honor_gpc(subject, source="Sec-GPC header", actor="tests") == []
    )  # nothing new to record


def test_the_kept_state_is_what_folding_the_ledger_gives(
    ledger: ConsentLedger, subject: str
) -> None:
    for action in (Action.GRANT, Action.WITHDRAW, Action.GRANT):
        ledger.record([choose(subject, "marketing.communications.email", action)], actor="tests")
    ledger.honor_gpc(subject, source="Sec-GPC header", actor="tests")
    assert ledger.rebuild_state()
    assert ledger.choices(subject)["marketing.communications.email"].granted


def test_an_edited_ledger_event_is_detected(
    runtime: Runtime, ledger: ConsentLedger, subject: str
) -> None:
    seqs = ledger.record(
        [
            choose(subject, "marketing.communications.email", a)
            for a in (Action.GRANT, Action.WITHDRAW)
        ],
        actor="tests",
    )
    assert ledger.verify() is None
    with runtime.sessions() as session, session.begin():
        session.execute(
            update(ConsentEventRow).where(ConsentEventRow.seq == seqs[1]).values(action="grant")
        )
    assert ledger.verify() == seqs[1]


def test_an_erased_subject_can_give_no_consent(
    runtime: Runtime, ledger: ConsentLedger, subject: str
) -> None:
    Vault(runtime.sessions, runtime.keyring, PersonalDataScanner()).shred(
        subject, actor="tests", reason="x"
    )
    with pytest.raises(SubjectErased):
        ledger.record(
            [choose(subject, "marketing.communications.email", Action.GRANT)], actor="tests"
        )


def test_an_audience_keeps_only_the_people_a_purpose_allows_in_the_order_given(
    runtime: Runtime, ledger: ConsentLedger, subject: str
) -> None:
    vault = Vault(runtime.sessions, runtime.keyring, PersonalDataScanner())
    people = [subject] + [
        r.subject_id
        for r in vault.collect(
            screened(
                vault,
                *[
                    Submission("newsletter", {"email": f"a{i}@example.com"}, Source.WEB_FORM)
                    for i in range(4)
                ],
            ),
            actor="tests",
            batch=True,
        )
    ]
    email = "marketing.communications.email"
    ledger.record([choose(people[i], email, Action.GRANT) for i in (0, 2, 3)], actor="tests")
    ledger.record([choose(people[3], email, Action.WITHDRAW)], actor="tests")
    vault.shred(people[2], actor="tests", reason="x")
    unknown = "00000000-0000-4000-8000-000000000000"
    asked = [people[4], unknown, *people]
    assert list(ledger.audience(email, ["user.contact.email"], asked, actor="tests", batch=2)) == [
        people[0]
    ]
    # An opt-out purpose keeps everyone who has not opted out.
    ads = "personalize.content"
    ledger.record([choose(people[1], ads, Action.WITHDRAW)], actor="tests")
    kept = list(
        ledger.audience(ads, ["user.behavior.browsing_history"], asked, actor="tests", batch=2)
    )
    assert kept == [people[4], people[0], people[3], people[4]]  # order and repeats as asked
    assert entries_for(runtime.sessions, people[0])[-1].action != "audience"  # one entry per call


def test_gpc_records_nothing_when_the_policy_does_not_honor_it(
    runtime: Runtime, ledger: ConsentLedger, subject: str
) -> None:
    raw = yaml.safe_load(REFERENCE_POLICY.read_text())
    for purpose in raw["purposes"].values():
        purpose["sale"] = purpose["sharing"] = False
    raw["signals"]["global_privacy_control"] = "not_honored"
    raw["version"] = "2026.11-no-gpc"
    publish_policy(runtime.sessions, load_policy_text(yaml.safe_dump(raw)), published_by="tests")
    assert not ledger.gpc_is_honored()
    assert ledger.honor_gpc(subject, source="Sec-GPC header", actor="tests") == []


def test_an_expired_withdrawal_does_not_stop_gpc_from_opting_out_again(
    ledger: ConsentLedger, subject: str
) -> None:
    past = dt.datetime.now(dt.UTC) - dt.timedelta(days=2)
    ledger.record(
        [choose(subject, SHARING, Action.WITHDRAW, expires_at=past + dt.timedelta(days=1))],
        actor="tests",
        now=past,
    )
    ledger.honor_gpc(subject, source="Sec-GPC header", actor="tests")
    assert ledger.choices(subject)[SHARING].method is Method.GPC


def test_reading_a_consent_record_is_audited_and_checks_the_subject(
    runtime: Runtime, ledger: ConsentLedger, subject: str
) -> None:
    ledger.consent_record(subject, actor="apikey:3:crm")
    assert entries_for(runtime.sessions, subject)[-1].action == "consent.read"
    with pytest.raises(SubjectNotFound):
        ledger.consent_record("00000000-0000-4000-8000-000000000000", actor="tests")


def test_a_batch_decided_before_a_withdrawal_is_decided_again_before_it_is_audited(
    runtime: Runtime, ledger: ConsentLedger, subject: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A batch reads its people in a snapshot and audits later: a withdrawal committed in
    between must not leave the log showing a use allowed after the person withdrew."""
    email = "marketing.communications.email"
    ledger.record([choose(subject, email, Action.GRANT)], actor="tests")
    decide_all = service._decide_all
    calls = []

    def withdrawn_after_the_snapshot(*args: Any, **kwargs: Any) -> Any:
        answers = decide_all(*args, **kwargs)
        if not calls:  # the snapshot has been read and decided on: now the person withdraws
            ledger.record([choose(subject, email, Action.WITHDRAW)], actor="tests")
        calls.append(answers)
        return answers

    monkeypatch.setattr(service, "_decide_all", withdrawn_after_the_snapshot)

    (answer,) = ledger.decide_many(
        [(subject, email, ["user.contact.email"], None)], actor="apikey:9:batch"
    )

    assert calls[0][0][0].allowed is True  # what the snapshot said
    assert len(calls) == 2
    assert isinstance(answer, Decision)
    assert answer.allowed is False
    story = [
        (e.action, json.loads(e.details).get("allowed"))
        for e in entries_for(runtime.sessions, subject)
        if e.action in {"consent.withdraw", "decide"}
    ]
    assert story == [("consent.withdraw", None), ("decide", False)]


def test_decisions_in_a_batch_are_those_made_one_by_one_and_each_is_audited(
    runtime: Runtime, ledger: ConsentLedger, subject: str
) -> None:
    vault = Vault(runtime.sessions, runtime.keyring, PersonalDataScanner())
    (other,) = vault.collect(
        screened(vault, Submission("newsletter", {"email": "other@example.com"}, Source.WEB_FORM)),
        actor="tests",
    )
    (gone,) = vault.collect(
        screened(vault, Submission("newsletter", {"email": "gone@example.com"}, Source.WEB_FORM)),
        actor="tests",
    )
    vault.shred(gone.subject_id, actor="tests", reason="x")
    email = "marketing.communications.email"
    ledger.record([choose(subject, email, Action.GRANT)], actor="tests")
    ledger.record([choose(other.subject_id, SHARING, Action.WITHDRAW)], actor="tests")
    stranger = "00000000-0000-4000-8000-000000000000"
    uses = {email: ["user.contact.email"], SHARING: ["user.device.cookie_id"]}
    questions = [
        (who, purpose, uses[purpose], None)
        for who in (subject, other.subject_id)
        for purpose in (email, SHARING)
    ]

    answers = ledger.decide_many(
        [
            *questions,
            (gone.subject_id, email, ["user.contact.email"], None),
            (stranger, email, [], None),
        ],
        actor="apikey:9:batch",
    )

    one_by_one = [ledger.decide(w, p, c, actor="tests") for w, p, c, _ in questions]
    assert answers[:4] == one_by_one
    assert [a.allowed for a in one_by_one] == [True, True, False, False]  # type: ignore[union-attr]
    assert isinstance(answers[4], SubjectErased)
    assert isinstance(answers[5], SubjectNotFound)
    audited = [
        (e.action, e.purpose)
        for e in entries_for(runtime.sessions, subject)
        if e.actor == "apikey:9:batch"
    ]
    assert audited == [("decide", email), ("decide", SHARING)]
    unknown = ("no.such.purpose", ["user.contact.email"])
    (batched,) = ledger.decide_many([(subject, *unknown, None)], actor="tests")
    assert batched == ledger.decide(subject, *unknown, actor="tests")
    assert not batched.allowed  # type: ignore[union-attr]
