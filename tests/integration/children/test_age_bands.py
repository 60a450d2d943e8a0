"""Decisions follow a person's age band: under 16, sale, sharing and targeted advertising need
an opt-in (a parent's, under 13), and a child's data goes to a third party only with a parent's
separate consent. The matrix at ages 12, 13, 15, 16, 17 and 18, on both databases."""

from __future__ import annotations

import datetime as dt

import pytest

from pledge.app import Services
from pledge.consent import Action, ChoiceToRecord, ConsentRefused, Method
from pledge.policy.ages import AgeBand
from pledge.vault import Source, Submission
from tests.people import child_token

SALE = "third_party_sharing.affiliate_marketing"  # a sale, to the affiliates (a third party)
ADS = "marketing.advertising.third_party.targeted"  # targeted advertising (sharing)
DELIVERY = "essential.service.fulfillment"  # a contract, with the carrier (a processor)
NOTICE = "d" * 64


def born_years_ago(years: int) -> str:
    today = dt.datetime.now(dt.UTC).date()
    try:
        born = today.replace(year=today.year - years)
    except ValueError:  # 29 February
        born = dt.date(today.year - years, 3, 1)
    return (born - dt.timedelta(days=30)).isoformat()  # a month past the birthday


def registered(services: Services, age: int) -> str:
    """Someone of `age` registered; a child under a parent's consent (its pass)."""
    fields = {
        "name": f"Age {age}",
        "email": f"age{age}@example.com",
        "password": "pw-123456789",
        "date_of_birth": born_years_ago(age),
    }
    parental = None
    consent_id = None
    if age < 13:
        consents = services.parental_consents
        consent_id, token = consents.ask("registration", "parent@example.com", actor="tests")
        consents.consent_by_email_plus(consent_id, token, third_party=False)
        parental = consents.account_pass(consent_id, child_token(consents, consent_id, token))
    (result,) = services.vault.collect(
        [
            Submission(
                "registration",
                fields,
                Source.WEB_FORM,
                parental_pass=parental,
            )
        ],
        actor="tests",
    )
    if consent_id is not None:
        services.parental_consents.account_opened(consent_id, result.subject_id)
    return result.subject_id


def allowed(services: Services, subject: str, purpose: str, **extra: str) -> bool:
    categories = ["user.device.cookie_id"] if purpose == ADS else ["user.contact.email"]
    if purpose == DELIVERY:
        categories = ["user.name"]
    decision = services.consent.decide(subject, purpose, categories, actor="tests", **extra)
    return decision.allowed


def grant(services: Services, subject: str, purpose: str, method: Method) -> None:
    services.consent.record(
        [ChoiceToRecord(subject, purpose, Action.GRANT, method, "tests", NOTICE)], actor="tests"
    )


@pytest.mark.parametrize(
    ("age", "band"),
    [
        (12, AgeBand.CHILD),
        (13, AgeBand.TEEN),
        (15, AgeBand.TEEN),
        (16, AgeBand.ADULT),
        (17, AgeBand.ADULT),
        (18, AgeBand.ADULT),
    ],
)
def test_the_decision_matrix_by_age(services: Services, age: int, band: AgeBand) -> None:
    subject = registered(services, age)
    assert services.vault.state(subject).age_band is band
    minor = band is not AgeBand.ADULT
    # Before any choice: an adult is in until opting out; a minor is out until opting in.
    assert allowed(services, subject, SALE, recipient="affiliates") is not minor
    assert allowed(services, subject, ADS) is not minor
    assert allowed(services, subject, DELIVERY, recipient="shipping_carrier")
    reasons = services.consent.decide(
        subject, SALE, ["user.contact.email"], actor="tests", recipient="affiliates"
    ).reasons
    if band is AgeBand.CHILD:
        assert any("under 13" in r and "parent" in r for r in reasons), reasons
    elif band is AgeBand.TEEN:
        assert any("13 to 15" in r and "own opt-in" in r for r in reasons), reasons
    else:
        assert not any(r.startswith("age:") for r in reasons), reasons

    if band is AgeBand.CHILD:
        # A child cannot opt in; their parent consented to the account only, not to third
        # parties (that case: test_parental_consent.py, the signed form).
        with pytest.raises(ConsentRefused, match="only a parent"):
            grant(services, subject, SALE, Method.FORM_CHECKBOX)
        assert not allowed(services, subject, SALE, recipient="affiliates")
        return
    grant(services, subject, SALE, Method.FORM_CHECKBOX)
    assert allowed(services, subject, SALE, recipient="affiliates")
    assert allowed(services, subject, ADS) is not minor, "each opt-in is its own"


def test_a_teen_becomes_an_adult_when_the_band_runs_out(services: Services) -> None:
    subject = registered(services, 15)
    assert allowed(services, subject, SALE, recipient="affiliates") is False
    today = dt.datetime.now(dt.UTC).date()
    assert services.age_bands.reassess(today) == 0, "nothing is due yet"
    in_two_years = today + dt.timedelta(days=2 * 366)
    assert services.age_bands.reassess(in_two_years) == 1
    assert services.vault.state(subject).age_band is AgeBand.ADULT
    assert allowed(services, subject, SALE, recipient="affiliates")
    assert services.age_bands.reassess(in_two_years) == 0, "an adult is never due again"
