"""Two processes collecting at once on one database: one unbroken audit chain, every row kept."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from sqlalchemy import func, select

from pledge.audit import verify_chain
from pledge.migrations import upgrade_database
from pledge.policy import load_policy_file, publish_policy
from pledge.runtime import Runtime
from pledge.vault.tables import Subject
from tests.conftest import REFERENCE_POLICY, FreshDatabases, test_settings

WORKER = textwrap.dedent(
    """
    import sys
    from pledge.config import Settings
    from pledge.runtime import Runtime
    from pledge.vault import PersonalDataScanner, Source, Submission, Vault

    name, count = sys.argv[1], int(sys.argv[2])
    with Runtime.build(Settings()) as runtime:
        vault = Vault(runtime.sessions, runtime.keyring, PersonalDataScanner())
        for i in range(count):
            email = f"{name}-{i}@example.com"
            screen = vault.age_pass("newsletter")
            item = Submission("newsletter", {"email": email}, Source.WEB_FORM, age_pass=screen)
            vault.collect([item], actor=name)
    """
)


def test_two_processes_appending_at_once_keep_one_intact_chain(
    fresh_databases: FreshDatabases, tmp_path: Path
) -> None:
    settings = test_settings(
        fresh_databases.new(),
        keystore_url=fresh_databases.new(),
        master_key_file=tmp_path / "m.key",
    )
    with Runtime.build(settings) as runtime:
        upgrade_database(runtime.engine)
        publish_policy(runtime.sessions, load_policy_file(REFERENCE_POLICY), published_by="tests")
    env = {
        **os.environ,
        "PLEDGE_ENVIRONMENT": "test",
        "PLEDGE_SECRET_KEY": "test-secret-key-not-a-placeholder",
        "PLEDGE_DATABASE_URL": settings.database_url,
        "PLEDGE_KEYSTORE_URL": settings.keystore_url,
        "PLEDGE_MASTER_KEY_FILE": str(settings.master_key_file),
    }
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, name, "40"], env=env, stderr=subprocess.PIPE
        )
        for name in ("left", "right")
    ]
    for worker in workers:
        _, errors = worker.communicate(timeout=120)
        assert worker.returncode == 0, errors.decode()
    with Runtime.build(settings) as runtime:
        entries, problem = verify_chain(runtime.sessions)
        with runtime.sessions() as session:
            subjects = session.scalar(select(func.count()).select_from(Subject))
    assert problem is None
    assert entries == 1 + 80  # the publication, then one entry per submission
    assert subjects == 80
