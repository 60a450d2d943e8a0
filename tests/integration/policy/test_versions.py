"""Publishing policy versions: immutable, idempotent, and the one in force is found by date."""

from __future__ import annotations

import datetime as dt

import yaml
from sqlalchemy import select

from pledge.audit import AuditEntry
from pledge.policy import (
    current_version,
    find_version,
    list_versions,
    load_policy_file,
    load_policy_text,
    publish_policy,
)
from pledge.runtime import Runtime
from tests.conftest import REFERENCE_POLICY


def a_later_version(effective: dt.date, version: str = "2027.1") -> str:
    raw = yaml.safe_load(REFERENCE_POLICY.read_text())
    raw["version"] = version
    raw["effective_date"] = effective
    raw["data_categories"]["user.name"]["retention"]["period"] = "2 years"
    return yaml.safe_dump(raw, sort_keys=False)


def test_publishing_stores_an_immutable_version_with_its_hash_and_date(runtime: Runtime) -> None:
    policy = load_policy_file(REFERENCE_POLICY)
    outcome = publish_policy(runtime.sessions, policy, published_by="alice")
    assert outcome.created
    stored = list_versions(runtime.sessions)
    assert [v.content_hash for v in stored] == [policy.content_hash]
    assert stored[0].effective_date == dt.date(2026, 11, 1)
    assert stored[0].material is True
    assert stored[0].published_by == "alice"


def test_publishing_the_same_content_twice_is_a_no_op(runtime: Runtime) -> None:
    policy = load_policy_file(REFERENCE_POLICY)
    first = publish_policy(runtime.sessions, policy, published_by="alice")
    # Same content, different layout and comments: still the same version.
    relaid = load_policy_text("# a comment\n" + yaml.safe_dump(yaml.safe_load(policy.source_text)))
    second = publish_policy(runtime.sessions, relaid, published_by="bob")
    assert not second.created
    assert second.version.id == first.version.id
    assert len(list_versions(runtime.sessions)) == 1


def test_the_version_in_force_is_the_latest_whose_effective_date_has_come(runtime: Runtime) -> None:
    publish_policy(runtime.sessions, load_policy_file(REFERENCE_POLICY), published_by="alice")
    future = load_policy_text(a_later_version(dt.date(2027, 3, 1)))
    publish_policy(runtime.sessions, future, published_by="alice")

    before = current_version(runtime.sessions, today=dt.date(2027, 2, 28))
    on_the_day = current_version(runtime.sessions, today=dt.date(2027, 3, 1))
    assert before is not None
    assert on_the_day is not None
    assert before[0].version == "2026.11"
    assert on_the_day[0].version == "2027.1"
    assert on_the_day[1].document.data_categories["user.name"].retention.period.amount == 2


def test_nothing_is_in_force_before_the_first_effective_date(runtime: Runtime) -> None:
    publish_policy(runtime.sessions, load_policy_file(REFERENCE_POLICY), published_by="alice")
    assert current_version(runtime.sessions, today=dt.date(2026, 10, 31)) is None


def test_a_version_is_found_by_id_label_or_hash_prefix(runtime: Runtime) -> None:
    outcome = publish_policy(
        runtime.sessions, load_policy_file(REFERENCE_POLICY), published_by="alice"
    )
    version = outcome.version
    for ref in (str(version.id), version.version, version.content_hash[:10]):
        found = find_version(runtime.sessions, ref)
        assert found is not None
        assert found[0].id == version.id
    assert find_version(runtime.sessions, "no-such-version") is None


def test_publishing_is_audited_with_the_publisher_and_no_repeat_on_a_no_op(
    runtime: Runtime,
) -> None:
    policy = load_policy_file(REFERENCE_POLICY)
    publish_policy(runtime.sessions, policy, published_by="staff:alice")
    publish_policy(runtime.sessions, policy, published_by="staff:bob")
    with runtime.sessions() as session:
        entries = session.scalars(
            select(AuditEntry).where(AuditEntry.action == "policy.publish")
        ).all()
    assert [(e.actor, e.subject_id) for e in entries] == [("staff:alice", None)]
    assert policy.content_hash in entries[0].details
