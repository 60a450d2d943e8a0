"""What a stolen or restored copy of the databases can reveal: no plaintext, and nothing of an
erased subject even from a copy taken before the erasure. These tests commit for real, on
databases of their own."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.exceptions import InvalidTag
from sqlalchemy import select

from pledge.demo import DEMO_PEOPLE, demo_submissions, load_demo
from pledge.keyring import Keyring
from pledge.keyring.tables import DataKey
from pledge.migrations import upgrade_database
from pledge.policy import load_policy_file, publish_policy
from pledge.runtime import Runtime
from pledge.vault import PersonalDataScanner, Source, SubjectErased, Submission, Vault
from pledge.vault.rules import value_aad
from pledge.vault.sealing import unseal
from pledge.vault.tables import PersonalValue
from tests.conftest import REFERENCE_POLICY, FreshDatabases, test_settings
from tests.people import screened


@pytest.fixture
def committed_runtime(fresh_databases: FreshDatabases, tmp_path: Path) -> Iterator[Runtime]:
    settings = test_settings(
        fresh_databases.new(),
        keystore_url=fresh_databases.new(),
        master_key_file=tmp_path / "master.key",
    )
    runtime = Runtime.build(settings)
    upgrade_database(runtime.engine)
    yield runtime
    runtime.close()


def demo_secrets() -> list[str]:
    secrets = [value for person in DEMO_PEOPLE for value in person.values()]
    secrets += [p["email"].lower() for p in DEMO_PEOPLE]
    secrets += ["".join(c for c in p["phone"] if c.isdigit()) for p in DEMO_PEOPLE]
    for submission in demo_submissions():
        secrets += [v for v in submission.fields.values() if len(v) >= 8]
    return secrets


def test_no_demo_value_is_in_the_database_files_or_their_dumps(
    committed_runtime: Runtime, fresh_databases: FreshDatabases
) -> None:
    summary = load_demo(committed_runtime)
    assert summary.people_created == len(DEMO_PEOPLE)
    committed_runtime.close()
    main = fresh_databases.dump(committed_runtime.settings.database_url)
    keystore = fresh_databases.dump(committed_runtime.settings.keystore_url)
    assert b"personal_values" in main  # the dump really holds the vault's tables
    # pg_dump writes binary columns as hex, so each secret is looked for in both spellings.
    dumps = (main, keystore, main.lower(), keystore.lower())
    forms = [(s, s.encode()) for s in demo_secrets()] + [
        (s, s.encode().hex().encode()) for s in demo_secrets()
    ]
    leaked = sorted({secret for secret, form in forms if any(form in dump for dump in dumps)})
    assert leaked == []


def test_an_erased_subject_stays_unreadable_in_a_copy_taken_before_the_erasure(
    committed_runtime: Runtime, fresh_databases: FreshDatabases
) -> None:
    runtime = committed_runtime
    publish_policy(runtime.sessions, load_policy_file(REFERENCE_POLICY), published_by="tests")
    vault = Vault(runtime.sessions, runtime.keyring, PersonalDataScanner())
    (erased,) = vault.collect(
        screened(
            vault,
            Submission(
                "newsletter",
                {"email": "gone@example.com", "name": "Gone Soon"},
                Source.WEB_FORM,
            ),
        ),
        actor="tests",
    )
    (kept,) = vault.collect(
        screened(
            vault,
            Submission(
                "newsletter",
                {"email": "stays@example.com", "name": "Still Here"},
                Source.WEB_FORM,
            ),
        ),
        actor="tests",
    )
    runtime.engine.dispose()
    backup = fresh_databases.copy(runtime.settings.database_url)  # taken before the erasure

    assert vault.shred(erased.subject_id, actor="tests", reason="deletion request")

    # Restore the old copy beside the live key store (where the erased key no longer exists).
    restored_settings = test_settings(
        backup,
        keystore_url=runtime.settings.keystore_url,
        master_key_file=runtime.settings.master_key_file,
    )
    with Runtime.build(restored_settings) as restored:
        restored_vault = Vault(restored.sessions, restored.keyring, PersonalDataScanner())
        with pytest.raises(SubjectErased):
            restored_vault.read(erased.subject_id, "marketing.communications.email", actor="tests")
        other = restored_vault.read(
            kept.subject_id, "marketing.communications.email", actor="tests"
        )
        assert "Still Here" in {v.value for v in other.values}
        with restored.sessions() as session:
            sealed = session.scalars(
                select(PersonalValue).where(PersonalValue.subject_id == erased.subject_id)
            ).all()
        assert len(sealed) == 2  # the copy still holds the erased subject's ciphertext...
        assert_no_key_opens(restored.keyring, sealed)  # ...and no key in existence opens it


def assert_no_key_opens(keyring: Keyring, sealed: list[PersonalValue]) -> None:
    with keyring.sessions() as keystore:
        subject_ids = keystore.scalars(select(DataKey.subject_id)).all()
    assert subject_ids  # other subjects' keys exist; none of them may open these values
    for row in sealed:
        assert row.subject_id not in subject_ids
        aad = value_aad(row.subject_id, row.collection_point, row.category, row.field, row.version)
        for subject_id in subject_ids:
            with pytest.raises(InvalidTag):
                unseal(keyring.data_key(subject_id), row.sealed, aad)
