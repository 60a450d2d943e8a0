"""The PKCS#11 provider on a real SoftHSM2 token: the master key never leaves it.

`.ci/run` installs Debian's softhsm2; on a laptop without it these tests are skipped with a
message, and under CI=true its absence is a failure.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pkcs11
import pytest

from pledge.keyring import Keyring, KeyUnavailable, Pkcs11Token
from pledge.policy import load_policy_file, publish_policy
from pledge.runtime import Runtime
from pledge.vault import PersonalDataScanner, Source, SubjectErased, Submission, Vault
from tests.conftest import IN_CI, REFERENCE_POLICY
from tests.people import screened

LIBRARY = Path(os.environ.get("PLEDGE_TEST_PKCS11_LIBRARY", "/usr/lib/softhsm/libsofthsm2.so"))
PIN = "4321"


@pytest.fixture(scope="session")
def softhsm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SoftHSM2 configuration of the test run's own, with its tokens in a temp folder."""
    if not (LIBRARY.exists() and shutil.which("softhsm2-util")):
        message = f"SoftHSM2 is not installed ({LIBRARY}; apt-get install softhsm2)"
        if IN_CI:
            pytest.fail(f"{message} (CI=true: .ci/run installs it)", pytrace=False)
        pytest.skip(message)
    home = tmp_path_factory.mktemp("softhsm")
    (home / "tokens").mkdir()
    config = home / "softhsm2.conf"
    config.write_text(
        f"directories.tokendir = {home / 'tokens'}\nobjectstore.backend = file\nlog.level = ERROR\n"
    )
    # The library reads this when it is first initialized in the process.
    os.environ["SOFTHSM2_CONF"] = str(config)
    return config


@pytest.fixture(scope="session")
def token_label(softhsm: Path) -> str:
    """One token for the run: SoftHSM sees only the tokens that exist when it first loads."""
    label = f"pledge-{uuid.uuid4().hex[:8]}"
    subprocess.run(
        [
            "softhsm2-util",
            "--init-token",
            "--free",
            "--label",
            label,
            "--pin",
            PIN,
            "--so-pin",
            "87654321",
        ],
        check=True,
        capture_output=True,
        env={**os.environ, "SOFTHSM2_CONF": str(softhsm)},
    )
    return label


@pytest.fixture
def prefix() -> str:
    """Key labels of this test's own, on the shared token."""
    return f"pledge-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def token(token_label: str, prefix: str) -> Iterator[Pkcs11Token]:
    provider = Pkcs11Token(LIBRARY, token_label, PIN, prefix)
    yield provider
    provider.close()


def test_the_token_generates_its_keys_non_extractable_and_keeps_them(
    token: Pkcs11Token, token_label: str, prefix: str
) -> None:
    assert token.active_key_id == f"pkcs11:{prefix}-1"
    # The provider's session has logged this process in; a second session shares that login.
    session = pkcs11.lib(str(LIBRARY)).get_token(token_label=token_label).open()
    try:
        for label in (f"{prefix}-1", f"{prefix}-index"):
            key = session.get_key(label=label, object_class=pkcs11.ObjectClass.SECRET_KEY)
            assert key[pkcs11.Attribute.EXTRACTABLE] is False
            assert key[pkcs11.Attribute.SENSITIVE] is True
            with pytest.raises(pkcs11.exceptions.AttributeSensitive):
                _ = key[pkcs11.Attribute.VALUE]
    finally:
        session.close()


def test_a_data_key_wrapped_by_the_token_unwraps_only_with_its_subject(token: Pkcs11Token) -> None:
    data_key = os.urandom(32)
    _, wrapped = token.wrap(data_key, b"subject-a")
    assert data_key not in wrapped
    assert token.unwrap(token.active_key_id, wrapped, b"subject-a") == data_key
    with pytest.raises(pkcs11.exceptions.PKCS11Error):
        token.unwrap(token.active_key_id, wrapped, b"subject-b")


def test_the_blind_index_is_computed_by_the_token_and_stable_across_sessions(
    token: Pkcs11Token, token_label: str, prefix: str
) -> None:
    first = token.blind_index(b"email:jane@example.com")
    again = Pkcs11Token(LIBRARY, token_label, PIN, prefix)
    try:
        assert again.blind_index(b"email:jane@example.com") == first
        assert again.blind_index(b"email:john@example.com") != first
        assert len(first) == 32
    finally:
        again.close()


def test_rotation_on_the_token_keeps_old_keys_until_retired(
    token: Pkcs11Token, prefix: str
) -> None:
    old = token.active_key_id
    _, wrapped = token.wrap(b"k" * 32, b"s")
    new = token.rotate()
    assert new == f"pkcs11:{prefix}-2"
    assert token.unwrap(old, wrapped, b"s") == b"k" * 32
    token.retire(old)
    with pytest.raises(KeyUnavailable):
        token.unwrap(old, wrapped, b"s")
    with pytest.raises(ValueError, match="active"):
        token.retire(new)


def test_the_vault_runs_on_the_token_end_to_end(
    runtime: Runtime, token: Pkcs11Token, prefix: str
) -> None:
    publish_policy(runtime.sessions, load_policy_file(REFERENCE_POLICY), published_by="tests")
    keyring = Keyring(token, runtime.keyring.sessions)
    vault = Vault(runtime.sessions, keyring, PersonalDataScanner())
    (result,) = vault.collect(
        screened(
            vault,
            Submission(
                "newsletter", {"email": "hsm@example.com", "name": "Hal Sm"}, Source.WEB_FORM
            ),
        ),
        actor="tests",
    )
    report = keyring.rotate_master_key(retire_previous=True)
    assert report.rewrapped == 1
    assert report.retired == (f"pkcs11:{prefix}-1",)
    data = vault.read(result.subject_id, "marketing.communications.email", actor="tests")
    assert {v.value for v in data.values} == {"hsm@example.com", "Hal Sm"}
    vault.shred(result.subject_id, actor="tests", reason="test")
    with pytest.raises(SubjectErased):
        vault.read(result.subject_id, "marketing.communications.email", actor="tests")
