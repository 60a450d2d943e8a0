"""The `pledge` command, run as a person would run it."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import httpx2 as httpx
import pyotp
import pytest
import yaml
from fideslang.models import Taxonomy
from typer.testing import CliRunner

from pledge.cli import app
from tests.conftest import REFERENCE_POLICY, FreshDatabases

PLEDGE = [sys.executable, "-m", "pledge.cli"]


@pytest.fixture
def env(empty_database_url: str, fresh_databases: FreshDatabases, tmp_path: Path) -> dict[str, str]:
    return {
        "PLEDGE_DATABASE_URL": empty_database_url,
        "PLEDGE_KEYSTORE_URL": fresh_databases.new(),
        "PLEDGE_MASTER_KEY_FILE": str(tmp_path / "master.key"),
        "PLEDGE_ENVIRONMENT": "test",
        "PLEDGE_SECRET_KEY": "test-secret-key-not-a-placeholder",
    }


@pytest.fixture
def runner(env: dict[str, str]) -> CliRunner:
    return CliRunner(env=env)


def broken_copy(tmp_path: Path) -> Path:
    text = REFERENCE_POLICY.read_text()
    text = text.replace("legal_basis: consent", "legal_basis: maybe", 1)
    text = text.replace("period: 2 years", "period: forever", 1)
    broken = tmp_path / "broken.yaml"
    broken.write_text(text)
    return broken


def test_check_accepts_the_reference_policy(runner: CliRunner) -> None:
    result = runner.invoke(app, ["policy", "check", str(REFERENCE_POLICY)])
    assert result.exit_code == 0, result.output
    assert "valid (version 2026.11" in result.output


def test_check_prints_every_problem_and_exits_non_zero(runner: CliRunner, tmp_path: Path) -> None:
    result = runner.invoke(app, ["policy", "check", str(broken_copy(tmp_path))])
    assert result.exit_code == 1
    assert "the policy is invalid (2 problems)" in result.output
    assert "purposes.marketing.communications.email.legal_basis" in result.output
    assert "retention.period: 'forever' is not a period" in result.output


def test_publish_twice_stores_one_version(runner: CliRunner) -> None:
    first = runner.invoke(app, ["policy", "publish", str(REFERENCE_POLICY), "--by", "alice"])
    second = runner.invoke(app, ["policy", "publish", str(REFERENCE_POLICY), "--by", "alice"])
    assert first.exit_code == 0, first.output
    assert "published version 2026.11 as #1" in first.output
    assert "unchanged: this content is already version #1" in second.output
    listing = runner.invoke(app, ["policy", "versions"])
    assert listing.output.count("2026.11") == 1


def test_diff_compares_a_published_version_with_a_file(runner: CliRunner, tmp_path: Path) -> None:
    runner.invoke(app, ["policy", "publish", str(REFERENCE_POLICY)])
    raw = yaml.safe_load(REFERENCE_POLICY.read_text())
    raw["data_categories"]["user.job_title"]["retention"]["period"] = "1 year"
    del raw["recipients"]["auditors"]
    raw["purposes"]["operations.audit"]["description"] = "Internal audits only."
    newer = tmp_path / "newer.yaml"
    newer.write_text(yaml.safe_dump(raw))
    result = runner.invoke(app, ["policy", "diff", "#1", str(newer)])
    assert result.exit_code == 0, result.output
    assert "- recipients.auditors removed" in result.output
    assert (
        "~ retention.user.job_title changed (3 years from last_activity -> 1 year" in result.output
    )


def test_diff_of_an_unknown_version_says_so(runner: CliRunner) -> None:
    result = runner.invoke(app, ["policy", "diff", "#42", str(REFERENCE_POLICY)])
    assert result.exit_code == 2
    assert "neither a file nor a published version" in result.output


def test_render_writes_markdown_and_html(runner: CliRunner, tmp_path: Path) -> None:
    markdown = runner.invoke(app, ["policy", "render", str(REFERENCE_POLICY), "--format", "md"])
    assert markdown.exit_code == 0, markdown.output
    assert "Your California Privacy Rights" in markdown.output
    out = tmp_path / "policy.html"
    html = runner.invoke(
        app, ["policy", "render", str(REFERENCE_POLICY), "-f", "html", "-o", str(out)]
    )
    assert html.exit_code == 0
    assert out.read_text().lstrip().lower().startswith("<!doctype html>")


def test_export_fideslang_writes_a_manifest_fideslang_parses(runner: CliRunner) -> None:
    result = runner.invoke(app, ["policy", "export-fideslang", str(REFERENCE_POLICY)])
    assert result.exit_code == 0, result.output
    Taxonomy.model_validate(yaml.safe_load(result.stdout))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture
def server(env: dict[str, str], tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    port = free_port()
    process = subprocess.Popen(
        [*PLEDGE, "serve", "--port", str(port)],
        env={**os.environ, **env},
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            time.sleep(0.2)
    yield base, process
    process.terminate()
    process.wait(timeout=10)


def test_serve_migrates_the_configured_database_and_serves_the_policy(
    server: tuple[str, subprocess.Popen[str]], runner: CliRunner
) -> None:
    base, process = server
    created = runner.invoke(app, ["apikey", "create", "reader", "--scope", "policy:read"])
    assert created.exit_code == 0, created.output
    token = created.output.strip().splitlines()[-1]
    assert httpx.get(f"{base}/v1/policy").status_code == 401
    headers = {"Authorization": f"Bearer {token}"}
    assert httpx.get(f"{base}/v1/policy", headers=headers).json()["version"] == "2026.11"
    assert "Aura Imaging, Inc." in httpx.get(f"{base}/privacy").text
    assert httpx.get(f"{base}/docs").status_code == 200
    process.terminate()
    output, _ = process.communicate(timeout=10)
    assert "GET /v1/policy 200" in output
    assert "127.0.0.1:" not in output.split("Pledge on http://")[-1].split("\n", 1)[-1]


def test_serve_refuses_an_invalid_policy_with_its_problems_not_a_traceback(
    env: dict[str, str], tmp_path: Path
) -> None:
    result = subprocess.run(
        [*PLEDGE, "serve", "--port", str(free_port())],
        env={**os.environ, **env, "PLEDGE_POLICY_FILE": str(broken_copy(tmp_path))},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "refusing to start: the policy is invalid (2 problems)" in result.stderr
    assert "broken.yaml:" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def test_serve_refuses_a_placeholder_secret_in_production(env: dict[str, str]) -> None:
    production = {**env, "PLEDGE_ENVIRONMENT": "production"}
    del production["PLEDGE_SECRET_KEY"]
    result = subprocess.run(
        [*PLEDGE, "serve"],
        env={**os.environ, **production},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "PLEDGE_SECRET_KEY still holds the development placeholder" in result.stderr
    assert "Traceback" not in result.stderr


def test_demo_starts_on_a_sqlite_file_in_the_working_directory_with_no_settings(
    tmp_path: Path,
) -> None:
    port = free_port()
    clean_env = {k: v for k, v in os.environ.items() if not k.startswith("PLEDGE_")}
    process = subprocess.Popen(
        [*PLEDGE, "demo", "--port", str(port)],
        env={**clean_env, "PYTHONUNBUFFERED": "1", "PLEDGE_SMTP_PORT": str(free_port())},
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert process.stdout is not None
        lines = [process.stdout.readline() for _ in range(5)]
        assert lines[0].startswith("demo: reference policy 2026.11 published")
        assert lines[1].startswith("demo: 6 demo people collected")
        token = lines[2].rsplit(" ", 1)[-1].strip()
        console = re.search(r"username (\S+), password (\S+)", lines[3])
        secret = re.search(r"TOTP secret is ([A-Z2-7]+);", lines[4])
        assert console is not None, lines
        assert secret is not None, lines
        headers = {"Authorization": f"Bearer {token}"}
        deadline, body = time.monotonic() + 30, None
        while time.monotonic() < deadline and body is None:
            try:
                body = httpx.get(
                    f"http://127.0.0.1:{port}/v1/policy", headers=headers, timeout=1
                ).json()
            except httpx.TransportError:
                time.sleep(0.2)
        assert body is not None, "the demo server did not answer within 30 s"
        assert body["version"] == "2026.11"
        assert (tmp_path / "pledge.db").is_file()
        assert (tmp_path / "pledge-keys.db").is_file()
        assert (tmp_path / "pledge-master.key").stat().st_mode & 0o777 == 0o600
        _the_demo_console_admits_its_admin(port, console[1], console[2], secret[1])
        _the_demo_mailbox_shows_a_privacy_center_code(port, process.stdout)
    finally:
        process.terminate()
        process.communicate(timeout=10)


def _the_demo_console_admits_its_admin(port: int, user: str, password: str, secret: str) -> None:
    """The console account the demo printed signs in with the code its secret gives."""
    base = f"http://127.0.0.1:{port}/console"
    with httpx.Client(follow_redirects=True) as client:
        signed_in = client.post(
            f"{base}/login",
            data={"username": user, "password": password, "code": pyotp.TOTP(secret).now()},
        )
        assert signed_in.status_code == 200, signed_in.text
        assert "Privacy requests" in signed_in.text or "Welcome" in signed_in.text
        assert client.get(f"{base}/requests").status_code == 200


def _the_demo_mailbox_shows_a_privacy_center_code(port: int, stdout: IO[str]) -> None:
    """A newcomer follows the README: asks the privacy center for a code, reads it in the
    demo's terminal, and sees their choices."""
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(stdout.readline, "")), daemon=True)
    reader.start()
    base = f"http://127.0.0.1:{port}/privacy-center/preferences"
    with httpx.Client(follow_redirects=True) as client:
        asked = client.post(f"{base}/code", data={"email": "maya.okafor@example.com"})
        challenge = re.search(r'name="challenge" value="([^"]+)"', asked.text)
        assert challenge is not None, asked.text
        deadline, code = time.monotonic() + 30, None
        while code is None and time.monotonic() < deadline:
            found = re.search(r"Your code is (\d{6})\.", "".join(lines))
            code = found.group(1) if found else None
            time.sleep(0.2)
        assert code is not None, "the demo mailbox printed no code within 30 s"
        verified = client.post(
            f"{base}/verify", data={"challenge": challenge.group(1), "code": code}
        )
        assert verified.status_code == 200, verified.text
        assert "Marketing e-mail and newsletters" in verified.text


def test_the_staff_commands_work_together(runner: CliRunner) -> None:
    assert runner.invoke(app, ["policy", "publish", str(REFERENCE_POLICY)]).exit_code == 0
    call = json.dumps(
        {
            "name": "Noor Haddad",
            "phone": "+1 718 555 0163",
            "correspondence": "Frame arrived cracked.",
        }
    )
    collected = runner.invoke(
        app,
        ["collect", "support_contact", "--staff", "sam", "--identity", "phone:+1 718 555 0163"],
        input=call,
    )
    assert collected.exit_code == 0, collected.output
    assert "stored 3 values for new subject" in collected.output
    resolved = runner.invoke(app, ["subjects", "resolve", "phone:(718) 555-0163", "--staff", "sam"])
    subject_id = resolved.output.strip()
    read = runner.invoke(
        app,
        [
            "subjects",
            "read",
            subject_id,
            "--purpose",
            "essential.service.operations.support",
            "--staff",
            "sam",
        ],
    )
    assert read.exit_code == 0, read.output
    values = {v["field"]: (v["value"], v["entered_by"]) for v in json.loads(read.output)["values"]}
    assert values["correspondence"] == ("Frame arrived cracked.", "sam")
    rotated = runner.invoke(app, ["keys", "rotate", "--retire-previous"])
    assert "1 data keys re-wrapped" in rotated.output
    assert "retired local:" in rotated.output
    assert (
        runner.invoke(
            app,
            ["subjects", "erase", subject_id, "--reason", "request 7", "--staff", "sam", "--yes"],
        ).output.strip()
        == "erased"
    )
    gone = runner.invoke(
        app,
        [
            "subjects",
            "read",
            subject_id,
            "--purpose",
            "essential.service.operations.support",
            "--staff",
            "sam",
        ],
    )
    assert gone.exit_code == 2
    assert "this subject was erased" in gone.output
    verified = runner.invoke(app, ["audit", "verify"])
    assert verified.exit_code == 0, verified.output
    assert "audit log intact" in verified.output
    assert "head: entry" in verified.output


def test_a_refused_staff_entry_stores_nothing_and_says_why(runner: CliRunner) -> None:
    runner.invoke(app, ["policy", "publish", str(REFERENCE_POLICY)])
    refused = runner.invoke(
        app, ["collect", "support_contact", "--staff", "sam"], input='{"name": "X"}'
    )
    assert refused.exit_code == 1
    assert "refused, nothing stored" in refused.output
    assert "fields.correspondence" in refused.output
    not_json = runner.invoke(app, ["collect", "support_contact", "--staff", "sam"], input="name=X")
    assert not_json.exit_code == 2
    assert "not JSON" in not_json.output


def test_a_revoked_key_is_listed_as_revoked(runner: CliRunner) -> None:
    created = runner.invoke(app, ["apikey", "create", "shop", "-s", "collect", "-s", "read:*"])
    assert created.exit_code == 0, created.output
    assert runner.invoke(app, ["apikey", "create", "bad", "-s", "everything"]).exit_code == 2
    assert runner.invoke(app, ["apikey", "revoke", "1"]).output.strip() == "key #1 revoked"
    listing = runner.invoke(app, ["apikey", "list"]).output
    assert "#1  shop  pledge_" in listing
    assert "revoked  collect read:*" in listing
    assert "secret" not in listing


def test_console_accounts_are_managed_from_the_command_line(runner: CliRunner) -> None:
    added = runner.invoke(
        app,
        ["staff", "add", "ana", "--role", "admin", "--staff", "ops", "--password-stdin"],
        input="a long enough passphrase\n",
    )
    assert added.exit_code == 0, added.output
    secret = re.search(r"secret: ([A-Z2-7]{32})", added.output)
    assert secret is not None
    assert "otpauth://totp/" in added.output
    weak = runner.invoke(
        app,
        ["staff", "add", "bo", "--role", "auditor", "--staff", "ops", "--password-stdin"],
        input="short\n",
    )
    assert weak.exit_code == 2
    assert "12 to 256 characters" in weak.output
    assert runner.invoke(app, ["staff", "role", "ana", "auditor", "--staff", "ops"]).exit_code == 0
    reset = runner.invoke(
        app,
        ["staff", "reset", "ana", "--staff", "ops", "--password-stdin"],
        input="another one here!\n",
    )
    assert reset.exit_code == 0, reset.output
    assert secret[1] not in reset.output  # a new secret
    assert runner.invoke(app, ["staff", "disable", "ana", "--staff", "ops"]).exit_code == 0
    listed = runner.invoke(app, ["staff", "list"])
    assert re.search(r"ana\s+auditor\s+disabled", listed.output), listed.output
    missing = runner.invoke(app, ["staff", "disable", "nobody", "--staff", "ops"])
    assert missing.exit_code == 2
    assert "no staff account 'nobody'" in missing.output


def test_a_subject_found_to_be_a_child_is_flagged_from_the_command_line(
    runner: CliRunner,
) -> None:
    assert runner.invoke(app, ["policy", "publish", str(REFERENCE_POLICY)]).exit_code == 0
    call = json.dumps({"name": "Tiny Tim", "phone": "+1 718 555 0199", "correspondence": "hi"})
    collected = runner.invoke(
        app,
        ["collect", "support_contact", "--staff", "sam", "--identity", "phone:+1 718 555 0199"],
        input=call,
    )
    assert collected.exit_code == 0, collected.output
    subject = runner.invoke(
        app, ["subjects", "resolve", "phone:+1 718 555 0199", "--staff", "sam"]
    ).output.strip()
    flagged = runner.invoke(
        app, ["children", "flag", subject, "--staff", "sam", "--reason", "said they are 9"]
    )
    assert flagged.exit_code == 0, flagged.output
    assert f"subject {subject} frozen" in flagged.output
    listed = runner.invoke(app, ["children", "list"])
    assert subject in listed.output
    assert "pending" in listed.output
    missing = runner.invoke(
        app,
        [
            "children",
            "flag",
            "00000000-0000-4000-8000-000000000000",
            "--staff",
            "s",
            "--reason",
            "x",
        ],
    )
    assert missing.exit_code == 2
