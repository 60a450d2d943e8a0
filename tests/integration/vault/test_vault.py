"""The vault on real databases: sealed values, purpose-bound reads, corrections, erasure, audit."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import func, select, text, update

from pledge.audit import AuditEntry, entries_for, verify_chain
from pledge.keyring import Keyring, LocalKeyFile
from pledge.keyring.tables import DataKey
from pledge.policy import load_policy_file, publish_policy
from pledge.runtime import Runtime
from pledge.vault import (
    CollectionRefused,
    IdentityKind,
    PersonalDataScanner,
    Source,
    SubjectErased,
    Submission,
    UnknownPurpose,
    Vault,
)
from pledge.vault.tables import Identity, PersonalValue, Subject
from tests.conftest import REFERENCE_POLICY
from tests.people import screened

SCANNER = PersonalDataScanner()

JANE = {
    "name": "Jane Quarrington",
    "email": "Jane.Quarrington@Example.com",
    "password": "hunter2-but-longer",
    "date_of_birth": "1990-02-14",
    "phone": "(310) 555-0199",
}


@pytest.fixture
def vault(runtime: Runtime) -> Vault:
    publish_policy(runtime.sessions, load_policy_file(REFERENCE_POLICY), published_by="tests")
    return Vault(runtime.sessions, runtime.keyring, SCANNER)


def register(vault: Vault, **fields: str) -> str:
    (result,) = vault.collect(
        screened(vault, Submission("registration", {**JANE, **fields}, Source.WEB_FORM)),
        actor="tests",
    )
    return result.subject_id


def count(runtime: Runtime, model: type) -> int:
    with runtime.sessions() as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


def test_a_subject_is_found_again_by_any_spelling_of_its_email_or_phone(vault: Vault) -> None:
    subject_id = register(vault)
    (again,) = vault.collect(
        screened(
            vault,
            Submission("newsletter", {"email": "  jane.quarrington@EXAMPLE.com "}, Source.WEB_FORM),
        ),
        actor="tests",
    )
    assert again.subject_id == subject_id
    assert not again.created
    assert vault.resolve(IdentityKind.PHONE, "+1 310-555-0199", actor="tests") == subject_id


def test_values_are_sealed_and_identities_kept_only_as_digests(
    vault: Vault, runtime: Runtime
) -> None:
    register(vault)
    with runtime.sessions() as session:
        sealed = b"".join(session.scalars(select(PersonalValue.sealed)))
        digests = " ".join(session.scalars(select(Identity.digest)))
    for value in JANE.values():
        assert value.encode() not in sealed
        assert value.lower() not in digests
    assert len(digests.split()) == 2  # the e-mail and the phone


def test_a_submission_the_policy_refuses_stores_nothing_at_all(
    vault: Vault, runtime: Runtime
) -> None:
    before = (count(runtime, Subject), count(runtime, PersonalValue), count(runtime, AuditEntry))
    bad = [
        Submission("registration_v2", {"email": "a@example.com"}, Source.WEB_FORM),
        Submission("newsletter", {"email": "a@example.com", "shoe_size": "44"}, Source.WEB_FORM),
        Submission("registration", {"email": "a@example.com", "name": "A"}, Source.WEB_FORM),
    ]
    for submission in bad:
        with pytest.raises(CollectionRefused):
            vault.collect([submission], actor="tests")
    after = (count(runtime, Subject), count(runtime, PersonalValue), count(runtime, AuditEntry))
    assert after == before


def test_the_refusal_names_each_problem_where_it_is(vault: Vault) -> None:
    with pytest.raises(CollectionRefused) as refused:
        vault.collect(
            screened(
                vault,
                Submission(
                    "registration", {"email": "a@example.com", "colour": "red"}, Source.WEB_FORM
                ),
            ),
            actor="tests",
        )
    places = {".".join(map(str, p.path)) for p in refused.value.problems}
    assert places == {"fields.colour", "fields.name", "fields.password", "fields.date_of_birth"}


def test_a_batch_with_one_bad_submission_stores_none_of_it(vault: Vault, runtime: Runtime) -> None:
    batch = [
        Submission("newsletter", {"email": f"reader{i}@example.com"}, Source.WEB_FORM)
        for i in range(5)
    ]
    batch.insert(3, Submission("newsletter", {"email": "not an address"}, Source.WEB_FORM))
    with pytest.raises(CollectionRefused) as refused:
        vault.collect(batch, actor="tests", batch=True)
    assert refused.value.problems[0].path == ("items", 3, "fields", "email")
    assert count(runtime, Subject) == 0


def test_a_purpose_reads_only_the_categories_the_policy_lets_it_use(vault: Vault) -> None:
    subject_id = register(vault)
    vault.collect(
        [
            Submission(
                "purchase_order",
                {
                    "name": JANE["name"],
                    "email": JANE["email"],
                    "shipping_address": "12 Elm Street, Springfield, IL 62701",
                    "billing_address": "12 Elm Street, Springfield, IL 62701",
                    "card": "4111 1111 1111 1111",
                    "order": "one frame",
                },
                Source.WEB_FORM,
            )
        ],
        actor="tests",
    )
    marketing = vault.read(subject_id, "marketing.communications.email", actor="tests")
    assert {v.category for v in marketing.values} == {"user.name", "user.contact.email"}
    assert {v.value for v in marketing.values} == {JANE["name"], JANE["email"]}
    payment = vault.read(subject_id, "essential.service.payment_processing", actor="tests")
    assert "user.financial.credit_card" in {v.category for v in payment.values}
    assert "user.authorization.password" not in {v.category for v in payment.values}


def test_an_unknown_purpose_is_refused(vault: Vault) -> None:
    subject_id = register(vault)
    with pytest.raises(UnknownPurpose):
        vault.read(subject_id, "curiosity", actor="tests")


def test_every_read_is_audited_with_its_purpose_and_without_values(
    vault: Vault, runtime: Runtime
) -> None:
    subject_id = register(vault)
    vault.read(subject_id, "essential.service.authentication", actor="apikey:1:shop")
    entries = entries_for(runtime.sessions, subject_id)
    assert [e.action for e in entries] == ["collect", "read"]
    read = entries[-1]
    assert (read.actor, read.purpose) == ("apikey:1:shop", "essential.service.authentication")
    for value in JANE.values():
        assert value not in read.details
        assert value not in entries[0].details


def test_values_keep_their_provenance(vault: Vault) -> None:
    (result,) = vault.collect(
        [
            Submission(
                "support_contact",
                {
                    "name": "Rui Costa",
                    "phone": "+1 646 555 0101",
                    "correspondence": "Letter about a refund.",
                },
                Source.STAFF_ENTRY,
                entered_by="sam",
            )
        ],
        actor="staff:sam",
    )
    data = vault.read(result.subject_id, "essential.service.operations.support", actor="tests")
    letter = next(v for v in data.values if v.field == "correspondence")
    assert (letter.source, letter.entered_by, letter.collection_point) == (
        "staff_entry",
        "sam",
        "support_contact",
    )
    assert letter.version == 1
    assert letter.policy_version_id > 0


def test_staff_entries_must_name_the_staff_member_and_others_must_not(vault: Vault) -> None:
    with pytest.raises(CollectionRefused, match="entered_by"):
        vault.collect(
            [
                Submission(
                    "support_contact",
                    {"name": "R", "correspondence": "x"},
                    Source.STAFF_ENTRY,
                    identity=(IdentityKind.EMAIL, "r@example.com"),
                )
            ],
            actor="tests",
        )


def test_a_correction_adds_a_version_and_keeps_the_old_one(vault: Vault) -> None:
    subject_id = register(vault)
    data = vault.read(subject_id, "essential.service.authentication", actor="tests")
    name = next(v for v in data.values if v.field == "name")
    new_id = vault.correct(
        subject_id, name.id, "Jane Q. Quarrington", actor="tests", source=Source.API
    )
    current = vault.read(subject_id, "essential.service.authentication", actor="tests")
    assert [v.value for v in current.values if v.field == "name"] == ["Jane Q. Quarrington"]
    history = vault.history(subject_id, new_id, "essential.service.authentication", actor="tests")
    assert [(v.version, v.value) for v in history] == [
        (1, JANE["name"]),
        (2, "Jane Q. Quarrington"),
    ]


def test_a_comment_is_kept_as_written_with_a_redacted_copy_for_publication(vault: Vault) -> None:
    comment = "Great frame. Write to me at jane.q@example.com or 310-555-0142!"
    (result,) = vault.collect(
        screened(
            vault,
            Submission(
                "comment", {"email": "jane.q@example.com", "comment": comment}, Source.WEB_FORM
            ),
        ),
        actor="tests",
    )
    assert result.findings == {"comment": {"EMAIL_ADDRESS": 1, "PHONE_NUMBER": 1}}
    data = vault.read(result.subject_id, "functional.service.user_content", actor="tests")
    (stored,) = [v for v in data.values if v.field == "comment"]
    assert stored.value == comment
    assert stored.redacted == "Great frame. Write to me at [email] or [phone]!"


def test_erasure_destroys_the_key_and_leaves_nothing_readable(
    vault: Vault, runtime: Runtime
) -> None:
    subject_id = register(vault)
    assert vault.shred(subject_id, actor="tests", reason="deletion request")
    with pytest.raises(SubjectErased):
        vault.read(subject_id, "essential.service.authentication", actor="tests")
    with runtime.keyring.sessions() as keystore:
        assert keystore.get(DataKey, subject_id) is None
    assert count(runtime, Identity) == 0
    assert count(runtime, PersonalValue) == 0
    assert vault.resolve(IdentityKind.EMAIL, JANE["email"], actor="tests") is None
    assert not vault.shred(subject_id, actor="tests", reason="again")
    actions = [e.action for e in entries_for(runtime.sessions, subject_id)]
    assert actions == ["collect", "shred"]


def test_a_failure_between_the_data_write_and_its_audit_entry_leaves_neither(
    vault: Vault, runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    def crash(*_args: object, **_kwargs: object) -> int:
        raise RuntimeError("the process died here")

    monkeypatch.setattr("pledge.vault.service.record_many", crash)
    with pytest.raises(RuntimeError, match="died"):
        register(vault)
    assert count(runtime, Subject) == 0
    assert count(runtime, PersonalValue) == 0
    assert count(runtime, AuditEntry) == 1  # the policy's publication, nothing after it


def test_the_audit_chain_verifies_and_names_the_first_tampered_entry(
    vault: Vault, runtime: Runtime
) -> None:
    subject_id = register(vault)
    for purpose in ("essential.service.authentication", "essential.fraud_detection"):
        vault.read(subject_id, purpose, actor="tests")
    entries, problem = verify_chain(runtime.sessions)
    assert (entries, problem) == (4, None)  # publish, collect, read, read
    with runtime.sessions() as session, session.begin():
        session.execute(update(AuditEntry).where(AuditEntry.seq == 3).values(purpose="marketing"))
    _, problem = verify_chain(runtime.sessions)
    assert problem is not None
    assert (problem.seq, "edited" in problem.problem) == (3, True)


def test_deleting_an_audit_entry_is_detected(vault: Vault, runtime: Runtime) -> None:
    subject_id = register(vault)
    vault.read(subject_id, "essential.service.authentication", actor="tests")
    vault.read(subject_id, "essential.fraud_detection", actor="tests")
    with runtime.sessions() as session, session.begin():
        session.execute(text("DELETE FROM audit_entries WHERE seq = 3"))
    _, problem = verify_chain(runtime.sessions)
    assert problem is not None
    assert problem.seq == 4
    assert "missing" in problem.problem


def test_rotation_rewraps_every_data_key_and_values_stay_readable(
    runtime: Runtime, tmp_path: Path
) -> None:
    publish_policy(runtime.sessions, load_policy_file(REFERENCE_POLICY), published_by="tests")
    keyring = Keyring(LocalKeyFile(tmp_path / "rotating.key"), runtime.keyring.sessions)
    vault = Vault(runtime.sessions, keyring, SCANNER)
    subject_id = register(vault)
    old_key = keyring.provider.active_key_id
    with keyring.sessions() as keystore:
        wrapped_before = keystore.get(DataKey, subject_id).wrapped  # type: ignore[union-attr]
    with runtime.sessions() as session:
        sealed_before = sorted(session.scalars(select(PersonalValue.sealed)))

    report = keyring.rotate_master_key(retire_previous=True)

    assert report.new_key_id != old_key
    assert report.retired == (old_key,)
    assert keyring.master_keys_in_use() == {report.new_key_id: 1}
    with keyring.sessions() as keystore:
        assert keystore.get(DataKey, subject_id).wrapped != wrapped_before  # type: ignore[union-attr]
    with runtime.sessions() as session:
        assert sorted(session.scalars(select(PersonalValue.sealed))) == sealed_before
    data = vault.read(subject_id, "essential.service.authentication", actor="tests")
    assert JANE["email"] in {v.value for v in data.values}


def test_correcting_an_email_moves_the_subject_to_the_new_address(vault: Vault) -> None:
    subject_id = register(vault)
    data = vault.read(subject_id, "essential.service.authentication", actor="tests")
    email = next(v for v in data.values if v.field == "email")
    with pytest.raises(CollectionRefused, match="not an e-mail address"):
        vault.correct(subject_id, email.id, "jane at example", actor="tests", source=Source.API)
    vault.correct(subject_id, email.id, "jane@new.example.org", actor="tests", source=Source.API)
    assert vault.resolve(IdentityKind.EMAIL, "jane@new.example.org", actor="tests") == subject_id
    assert vault.resolve(IdentityKind.EMAIL, JANE["email"], actor="tests") is None


def test_erasing_again_destroys_a_key_a_restored_key_store_brought_back(
    vault: Vault, runtime: Runtime
) -> None:
    subject_id = register(vault)
    with runtime.keyring.sessions() as keystore:
        saved = keystore.get(DataKey, subject_id)
        assert saved is not None
        backup = DataKey(
            subject_id=saved.subject_id,
            wrapped=saved.wrapped,
            master_key_id=saved.master_key_id,
            created_at=saved.created_at,
        )
    vault.shred(subject_id, actor="tests", reason="request")
    with runtime.keyring.sessions() as keystore, keystore.begin():
        keystore.add(backup)  # the key store is restored from a backup older than the erasure
    assert not vault.shred(subject_id, actor="tests", reason="re-apply after restore")
    with runtime.keyring.sessions() as keystore:
        assert keystore.get(DataKey, subject_id) is None


def test_collecting_for_an_erased_subject_is_refused_and_leaves_no_key_behind(
    vault: Vault, runtime: Runtime
) -> None:
    subject_id = register(vault)
    vault.shred(subject_id, actor="tests", reason="request")
    with runtime.keyring.sessions() as keystore:
        keys_before = keystore.scalar(select(func.count()).select_from(DataKey))
    batch = screened(
        vault,
        Submission("newsletter", {"email": "first-time@example.com"}, Source.WEB_FORM),
        Submission(
            "newsletter", {"email": "x@example.com"}, Source.WEB_FORM, subject_id=subject_id
        ),
    )
    with pytest.raises(SubjectErased):
        vault.collect(batch, actor="tests", batch=True)
    with runtime.keyring.sessions() as keystore:
        assert keystore.scalar(select(func.count()).select_from(DataKey)) == keys_before
    assert count(runtime, Subject) == 1


def test_a_correction_cannot_take_an_identity_that_belongs_to_someone_else(vault: Vault) -> None:
    jane = register(vault)
    (other,) = vault.collect(
        screened(vault, Submission("newsletter", {"email": "taken@example.com"}, Source.WEB_FORM)),
        actor="tests",
    )
    email = next(
        v
        for v in vault.read(jane, "essential.service.authentication", actor="tests").values
        if v.field == "email"
    )
    with pytest.raises(CollectionRefused, match="identifies another subject"):
        vault.correct(jane, email.id, "TAKEN@example.com", actor="tests", source=Source.API)
    assert vault.resolve(IdentityKind.EMAIL, JANE["email"], actor="tests") == jane
    assert vault.resolve(IdentityKind.EMAIL, "taken@example.com", actor="tests") == other.subject_id


def test_correcting_one_of_two_values_holding_an_email_keeps_it_indexed(vault: Vault) -> None:
    subject_id = register(vault)
    vault.collect(
        screened(vault, Submission("newsletter", {"email": JANE["email"]}, Source.WEB_FORM)),
        actor="tests",
    )
    values = vault.read(subject_id, "essential.service.authentication", actor="tests").values
    registration_email = next(
        v for v in values if v.field == "email" and v.collection_point == "registration"
    )
    vault.correct(
        subject_id, registration_email.id, "jane@work.example", actor="tests", source=Source.API
    )
    assert vault.resolve(IdentityKind.EMAIL, JANE["email"], actor="tests") == subject_id
    assert vault.resolve(IdentityKind.EMAIL, "jane@work.example", actor="tests") == subject_id
