"""Diffs between policy versions list added, removed and changed entries and retention."""

from __future__ import annotations

import copy
from pathlib import Path

from pledge.policy import PolicyDocument, diff_policies, load_policy_file, retention_changes

REFERENCE = Path(__file__).resolve().parents[3] / "policies" / "reference.yaml"


def reference() -> PolicyDocument:
    return load_policy_file(REFERENCE).document


def changed(document: PolicyDocument, **sections: object) -> PolicyDocument:
    return PolicyDocument.model_validate({**document.model_dump(), **sections})


def test_identical_policies_have_no_differences() -> None:
    assert diff_policies(reference(), reference()) == []
    assert retention_changes(reference(), reference()) == []


def test_added_removed_and_changed_entries_are_listed() -> None:
    old = reference()
    raw = copy.deepcopy(old.model_dump())
    del raw["recipients"]["auditors"]
    raw["purposes"]["essential.service"]["description"] = "Run the services."
    raw["purposes"]["analytics.reporting.campaign_insights"] = {
        "description": "See which campaigns work.",
        "legal_basis": "legitimate_interest",
    }
    raw["data_categories"]["user.name"]["purposes"].append("analytics.reporting.campaign_insights")
    new = PolicyDocument.model_validate(raw)

    lines = [str(c) for c in diff_policies(old, new)]
    assert "+ purposes.analytics.reporting.campaign_insights added" in lines
    assert "- recipients.auditors removed" in lines
    assert any(
        line.startswith("~ purposes.essential.service changed (description: ") for line in lines
    )
    assert any(line.startswith("~ data_categories.user.name changed (purposes: ") for line in lines)


def test_a_shorter_retention_period_is_called_out() -> None:
    old = reference()
    raw = copy.deepcopy(old.model_dump())
    raw["data_categories"]["user.contact.phone_number"]["retention"]["period"] = "1 year"
    new = PolicyDocument.model_validate(raw)
    (change,) = retention_changes(old, new)
    assert str(change) == (
        "~ retention.user.contact.phone_number changed "
        "(3 years from last_activity -> 1 year from last_activity)"
    )
