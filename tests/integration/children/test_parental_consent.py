"""Parents' consent on real databases and a real SMTP server: the direct notice, e-mail plus
(refused when third parties are asked for), evidence checked by staff and destroyed, the child's
account opened under the consent with the consent in the ledger, the window after which the
parent's address is gone, and a child found later: frozen, then erased or consented."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from sqlalchemy import func, select

from pledge.app import Services
from pledge.children import (
    CHILD_ACCOUNT,
    ConsentNotFound,
    ConsentRefusedHere,
    TooManyAsks,
)
from pledge.children.tables import ParentalConsent
from pledge.consent import Method
from pledge.keyring import SubjectKeyDestroyed
from pledge.keyring.tables import DataKey
from pledge.policy.ages import AgeBand
from pledge.policy.document import ParentalConsentMethod
from pledge.runtime import Runtime
from pledge.vault import CollectionRefused, Source, SubjectErased, SubjectFrozen, Submission
from pledge.vault.rules import IdentityInvalid
from tests.conftest import SmtpInbox
from tests.people import body, child_token, email_index, mail_to, screened

PARENT = "parent@example.com"
SALE = "third_party_sharing.affiliate_marketing"


def token_in(text: str) -> str:
    found = re.search(r"/parental-consent/[0-9a-f-]{36}\?token=([A-Za-z0-9_-]{43})", text)
    assert found, text
    return found[1]


def child_fields(email: str = "kid@example.com") -> dict[str, str]:
    return {
        "name": "Kid Example",
        "email": email,
        "password": "pw-123456789",
        "date_of_birth": "2016-05-04",
    }


def test_a_child_sign_up_waits_for_a_parent_and_keeps_only_the_parents_address(
    services: Services, inbox: SmtpInbox, runtime: Runtime
) -> None:
    consents = services.parental_consents
    consent_id, _ = consents.ask("registration", PARENT, actor="sign-up page")
    services.jobs.drain()
    (notice,) = mail_to(inbox, PARENT)
    assert "What we would collect: " in notice
    assert "third parties only if you also agree" in notice
    assert "If you do nothing, we delete your address within 14 days" in notice
    with runtime.sessions() as session:
        row = session.get(ParentalConsent, consent_id)
        assert row is not None
        assert row.child_subject_id is None
        assert PARENT.encode() not in (row.parent_sealed or b"")
        assert (row.status, row.third_party_consented) == ("pending", False)


def test_email_plus_is_refused_when_disclosure_to_third_parties_is_asked(
    services: Services, inbox: SmtpInbox
) -> None:
    consents = services.parental_consents
    consent_id, token = consents.ask("registration", PARENT, actor="sign-up page")
    with pytest.raises(ConsentRefusedHere, match="third parties"):
        consents.consent_by_email_plus(consent_id, token, third_party=True)
    assert consents.view(consent_id, token).status == "pending"
    given = consents.consent_by_email_plus(consent_id, token, third_party=False)
    assert (given.status, given.method, given.third_party_consented) == (
        "consented",
        "email_plus",
        False,
    )
    services.jobs.drain()
    assert any("You consented to your child's account" in m for m in mail_to(inbox, PARENT))


def test_the_childs_account_opens_under_the_consent_which_the_ledger_keeps(
    services: Services,
) -> None:
    consents = services.parental_consents
    consent_id, token = consents.ask("registration", PARENT, actor="sign-up page")
    with pytest.raises(ConsentRefusedHere):
        consents.account_pass(
            consent_id, child_token(consents, consent_id, token)
        )  # not before the parent consents
    consents.consent_by_email_plus(consent_id, token, third_party=False)
    parental = consents.account_pass(consent_id, child_token(consents, consent_id, token))
    (child,) = services.vault.collect(
        [Submission("registration", child_fields(), Source.WEB_FORM, parental_pass=parental)],
        actor="sign-up page",
    )
    consents.account_opened(consent_id, child.subject_id)
    (event,) = services.consent.history(child.subject_id)
    assert (event.purpose, event.method) == (CHILD_ACCOUNT, Method.PARENT)
    assert "email_plus" in event.source
    # Disclosure to third parties was not consented to: the sale stays off for this child.
    decision = services.consent.decide(
        child.subject_id, SALE, ["user.contact.email"], actor="tests", recipient="affiliates"
    )
    assert not decision.allowed
    assert any("separate consent" in r for r in decision.reasons)
    with pytest.raises(ConsentRefusedHere):
        consents.account_pass(
            consent_id, child_token(consents, consent_id, token)
        )  # one account per consent


def test_a_signed_form_is_checked_by_staff_then_destroyed_and_third_parties_are_separate(
    services: Services, runtime: Runtime, inbox: SmtpInbox
) -> None:
    consents = services.parental_consents
    consent_id, token = consents.ask("registration", PARENT, actor="sign-up page")
    pdf = b"%PDF-1.4 signed consent form of a parent"
    consents.submit_evidence(
        consent_id,
        token,
        method=ParentalConsentMethod.SIGNED_FORM,
        content=pdf,
        media_type="application/pdf",
        third_party=True,
    )
    with runtime.sessions() as session:
        row = session.get(ParentalConsent, consent_id)
        assert row is not None
        assert row.status == "in_review"
        assert pdf not in (row.evidence_sealed or b"")
        evidence_key = row.evidence_key_id
    assert consents.evidence(consent_id, actor="staff:sam") == (pdf, "application/pdf")
    reviewed = consents.review(
        consent_id, approve=True, reference="form 2026-118, signature matches", actor="staff:sam"
    )
    assert (reviewed.status, reviewed.third_party_consented) == ("consented", True)
    assert "form 2026-118" in (reviewed.evidence_reference or "")
    with pytest.raises(ConsentNotFound):
        consents.evidence(consent_id, actor="staff:sam")
    assert evidence_key is not None
    with pytest.raises(SubjectKeyDestroyed):
        runtime.keyring.data_key(evidence_key)
    parental = consents.account_pass(consent_id, child_token(consents, consent_id, token))
    (child,) = services.vault.collect(
        [Submission("registration", child_fields(), Source.WEB_FORM, parental_pass=parental)],
        actor="sign-up page",
    )
    consents.account_opened(consent_id, child.subject_id)
    decision = services.consent.decide(
        child.subject_id, SALE, ["user.contact.email"], actor="tests", recipient="affiliates"
    )
    assert decision.allowed, decision.reasons


def test_a_government_id_that_fails_the_check_is_destroyed_and_the_parent_may_try_again(
    services: Services, runtime: Runtime, inbox: SmtpInbox
) -> None:
    consents = services.parental_consents
    consent_id, token = consents.ask("registration", PARENT, actor="sign-up page")
    consents.submit_evidence(
        consent_id,
        token,
        method=ParentalConsentMethod.GOVERNMENT_ID,
        content=b"\x89PNG not a real licence",
        media_type="image/png",
        third_party=False,
    )
    refused = consents.review(
        consent_id, approve=False, reference="name does not match", actor="staff:sam"
    )
    assert refused.status == "pending"
    with runtime.sessions() as session:
        row = session.get(ParentalConsent, consent_id)
        assert row is not None
        assert (row.evidence_sealed, row.evidence_key_id) == (None, None)
    services.jobs.drain()
    assert "You can try again" in mail_to(inbox, PARENT)[-1]
    again = consents.consent_by_email_plus(consent_id, token, third_party=False)
    assert again.status == "consented"


def test_after_fourteen_days_without_consent_the_parents_address_is_gone(
    services: Services, runtime: Runtime
) -> None:
    consents = services.parental_consents
    consent_id, token = consents.ask("registration", PARENT, actor="sign-up page")
    thirteen = dt.datetime.now(dt.UTC) + dt.timedelta(days=13)
    assert consents.close_expired(thirteen) == 0
    assert consents.close_expired(thirteen + dt.timedelta(days=1, minutes=1)) == 1
    with runtime.sessions() as session:
        row = session.get(ParentalConsent, consent_id)
        assert row is not None
        assert (row.status, row.parent_sealed, row.parent_index) == ("expired", None, None)
    with runtime.keyring.sessions() as keystore:
        keys = keystore.scalar(
            select(func.count()).select_from(DataKey).where(DataKey.subject_id == consent_id)
        )
    assert keys == 0
    with pytest.raises(ConsentNotFound):
        consents.view(consent_id, token)


def test_a_child_found_later_is_frozen_at_once_and_erased_without_consent(
    services: Services, inbox: SmtpInbox
) -> None:
    (found,) = services.vault.collect(
        screened(
            services.vault,
            Submission("newsletter", {"email": "young@example.com"}, Source.WEB_FORM),
        ),
        actor="tests",
    )
    subject = found.subject_id
    consent_id = services.parental_consents.flag_child(
        subject, actor="staff:sam", reason="the child wrote to support", parent_email=PARENT
    )
    assert consent_id is not None
    with pytest.raises(SubjectFrozen):
        services.vault.read(subject, "marketing.communications.email", actor="tests")
    decision = services.consent.decide(
        subject, "marketing.communications.email", ["user.contact.email"], actor="tests"
    )
    assert not decision.allowed
    assert any(r.startswith("frozen") for r in decision.reasons)
    services.jobs.drain()
    notice = body(next(m for m in inbox.messages if m["To"] == PARENT))
    assert "erase your child's account" in notice
    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=15)
    assert services.parental_consents.close_expired(later) == 1
    with pytest.raises(SubjectErased):
        services.vault.read(subject, "essential.legal_obligation.privacy_requests", actor="t")


def test_a_child_found_later_whose_parent_consents_is_thawed_with_the_consent_recorded(
    services: Services, inbox: SmtpInbox
) -> None:
    (found,) = services.vault.collect(
        screened(
            services.vault,
            Submission("newsletter", {"email": "young@example.com"}, Source.WEB_FORM),
        ),
        actor="tests",
    )
    consents = services.parental_consents
    consent_id = consents.flag_child(
        found.subject_id, actor="staff:sam", reason="age stated in a comment", parent_email=PARENT
    )
    assert consent_id is not None
    services.jobs.drain()
    token = token_in(mail_to(inbox, PARENT)[0])
    consents.consent_by_email_plus(consent_id, token, third_party=False)
    state = services.vault.state(found.subject_id)
    assert not state.frozen
    assert state.age_band is AgeBand.CHILD
    assert [e.purpose for e in services.consent.history(found.subject_id)] == [CHILD_ACCOUNT]
    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=15)
    assert consents.close_expired(later) == 0  # consented: nothing to close


def test_a_parent_revoking_consent_erases_the_childs_data(services: Services) -> None:
    consents = services.parental_consents
    consent_id, token = consents.ask("registration", PARENT, actor="sign-up page")
    consents.consent_by_email_plus(consent_id, token, third_party=False)
    (child,) = services.vault.collect(
        [
            Submission(
                "registration",
                child_fields(),
                Source.WEB_FORM,
                parental_pass=consents.account_pass(
                    consent_id, child_token(consents, consent_id, token)
                ),
            )
        ],
        actor="sign-up page",
    )
    consents.account_opened(consent_id, child.subject_id)
    parent_index = email_index(services, PARENT)
    assert [v.id for v in consents.of_parent(parent_index)] == [consent_id]
    consents.revoke(consent_id, parent_index=parent_index)
    with pytest.raises(SubjectErased):
        services.vault.read(child.subject_id, "essential.service", actor="tests")
    with pytest.raises(ConsentNotFound):
        consents.revoke(consent_id, parent_index="0" * 64)


def test_a_parents_pass_opens_one_new_account_never_an_existing_one(
    services: Services,
) -> None:
    consents = services.parental_consents
    services.vault.collect(
        screened(
            services.vault,
            Submission("newsletter", {"email": "victim@example.com"}, Source.WEB_FORM),
        ),
        actor="tests",
    )
    consent_id, token = consents.ask("registration", PARENT, actor="sign-up page")
    consents.consent_by_email_plus(consent_id, token, third_party=False)
    parental = consents.account_pass(consent_id, child_token(consents, consent_id, token))
    with pytest.raises(CollectionRefused, match="one new account"):
        services.vault.collect(
            [
                Submission(
                    "registration",
                    child_fields("victim@example.com"),
                    Source.WEB_FORM,
                    parental_pass=parental,
                )
            ],
            actor="attacker",
        )
    (child,) = services.vault.collect(
        [Submission("registration", child_fields(), Source.WEB_FORM, parental_pass=parental)],
        actor="sign-up page",
    )
    consents.account_opened(consent_id, child.subject_id)
    with pytest.raises(CollectionRefused, match="one new account"):
        services.vault.collect(
            [
                Submission(
                    "registration",
                    child_fields("second@example.com"),
                    Source.WEB_FORM,
                    parental_pass=parental,
                )
            ],
            actor="sign-up page",
        )


def test_under_a_parents_pass_a_child_stays_a_child_whatever_date_is_typed(
    services: Services,
) -> None:
    consents = services.parental_consents
    consent_id, token = consents.ask("registration", PARENT, actor="sign-up page")
    consents.consent_by_email_plus(consent_id, token, third_party=False)
    older = {**child_fields(), "date_of_birth": "1990-01-01"}
    (child,) = services.vault.collect(
        [
            Submission(
                "registration",
                older,
                Source.WEB_FORM,
                parental_pass=consents.account_pass(
                    consent_id, child_token(consents, consent_id, token)
                ),
            )
        ],
        actor="sign-up page",
    )
    assert services.vault.state(child.subject_id).age_band is AgeBand.CHILD


def test_flagging_a_child_twice_does_not_erase_them_once_a_parent_consented(
    services: Services, inbox: SmtpInbox
) -> None:
    (found,) = services.vault.collect(
        screened(
            services.vault,
            Submission("newsletter", {"email": "young@example.com"}, Source.WEB_FORM),
        ),
        actor="tests",
    )
    consents = services.parental_consents
    first = consents.flag_child(found.subject_id, actor="staff:sam", reason="first report")
    second = consents.flag_child(
        found.subject_id, actor="staff:sam", reason="parent known", parent_email=PARENT
    )
    assert consents.view_for_staff(first).status == "superseded"
    services.jobs.drain()
    consents.consent_by_email_plus(second, token_in(mail_to(inbox, PARENT)[0]), third_party=False)
    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=15)
    consents.close_expired(later)
    assert services.vault.read(found.subject_id, "essential.service", actor="tests")


def test_a_bad_parent_address_when_flagging_changes_nothing(services: Services) -> None:
    (found,) = services.vault.collect(
        screened(
            services.vault,
            Submission("newsletter", {"email": "young@example.com"}, Source.WEB_FORM),
        ),
        actor="tests",
    )
    with pytest.raises(IdentityInvalid):
        services.parental_consents.flag_child(
            found.subject_id, actor="staff:sam", reason="x", parent_email="not an address"
        )
    assert not services.vault.state(found.subject_id).frozen


def test_a_flag_whose_reason_holds_personal_data_is_refused_and_changes_nothing(
    services: Services,
) -> None:
    (found,) = services.vault.collect(
        screened(
            services.vault,
            Submission("newsletter", {"email": "young@example.com"}, Source.WEB_FORM),
        ),
        actor="tests",
    )
    with pytest.raises(ConsentRefusedHere, match="must not hold personal data"):
        services.parental_consents.flag_child(
            found.subject_id, actor="staff:sam", reason="Her mother called from 415-555-0132."
        )
    assert not services.vault.state(found.subject_id).frozen
    assert services.parental_consents.waiting() == []


def test_revoking_while_evidence_waits_destroys_it(services: Services, runtime: Runtime) -> None:
    consents = services.parental_consents
    consent_id, token = consents.ask("registration", PARENT, actor="sign-up page")
    consents.submit_evidence(
        consent_id,
        token,
        method=ParentalConsentMethod.GOVERNMENT_ID,
        content=b"\x89PNG an ID",
        media_type="image/png",
        third_party=False,
    )
    with runtime.sessions() as session:
        row = session.get(ParentalConsent, consent_id)
        assert row is not None
        evidence_key = row.evidence_key_id
    consents.revoke_by_token(consent_id, token)
    with pytest.raises(ConsentNotFound):
        consents.evidence(consent_id, actor="staff:sam")
    assert evidence_key is not None
    with pytest.raises(SubjectKeyDestroyed):
        runtime.keyring.data_key(evidence_key)


def test_evidence_waiting_for_staff_holds_the_window_open(services: Services) -> None:
    consents = services.parental_consents
    consent_id, token = consents.ask("registration", PARENT, actor="sign-up page")
    consents.submit_evidence(
        consent_id,
        token,
        method=ParentalConsentMethod.SIGNED_FORM,
        content=b"%PDF-1.4 form",
        media_type="application/pdf",
        third_party=False,
    )
    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=30)
    assert consents.close_expired(later) == 0
    assert consents.view(consent_id, token).status == "in_review"


def test_a_frozen_childs_data_is_neither_added_to_nor_corrected(services: Services) -> None:
    (found,) = services.vault.collect(
        screened(
            services.vault,
            Submission("newsletter", {"email": "young@example.com", "name": "Y"}, Source.WEB_FORM),
        ),
        actor="tests",
    )
    services.parental_consents.flag_child(found.subject_id, actor="staff:sam", reason="x")
    with pytest.raises(CollectionRefused, match="frozen"):
        services.vault.collect(
            screened(
                services.vault,
                Submission(
                    "newsletter", {"email": "young@example.com", "name": "Z"}, Source.WEB_FORM
                ),
            ),
            actor="tests",
        )
    with pytest.raises(SubjectFrozen):
        services.vault.correct(found.subject_id, 1, "Z", actor="tests", source=Source.API)


def test_a_parent_is_asked_at_most_three_times_a_day(services: Services, inbox: SmtpInbox) -> None:
    consents = services.parental_consents
    for _ in range(3):
        consents.ask("registration", PARENT, actor="sign-up page")
    with pytest.raises(TooManyAsks):
        consents.ask("registration", PARENT, actor="sign-up page")
    services.jobs.drain()
    assert len(mail_to(inbox, PARENT)) == 3
