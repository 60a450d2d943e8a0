"""The `pledge` command: each command parses its options and calls one service."""

from __future__ import annotations

import datetime as dt
import getpass
import json
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import pkcs11
import typer
import uvicorn
import yaml
from pydantic import ValidationError

from pledge.apikeys import InvalidScopes, create_api_key, list_api_keys, revoke_api_key
from pledge.app import DatabaseNotReady, Services, build_services, create_app
from pledge.audit import chain_head, record, verify_chain
from pledge.children import ConsentRefusedHere
from pledge.config import Settings
from pledge.demo import DemoMailbox, load_demo
from pledge.jobs import JobNotFailed, JobNotFound, JobStatus
from pledge.keyring import KeyUnavailable
from pledge.logs import configure_logging
from pledge.migrations import schema_is_current, upgrade_database
from pledge.policy import (
    LoadedPolicy,
    PolicyDocument,
    PolicyInvalid,
    diff_policies,
    export_fideslang,
    find_version,
    list_versions,
    load_policy_file,
    publish_policy,
    render_policy,
    retention_changes,
)
from pledge.requests import (
    ExtensionRefused,
    IntakeRefused,
    RequestNotFound,
    TransitionRefused,
)
from pledge.requests import Status as RequestStatus
from pledge.runtime import Runtime
from pledge.staff import AccountRefused, Enrolment, Role, StaffNotFound
from pledge.vault import (
    CollectionRefused,
    IdentityKind,
    NoPolicyInForce,
    PersonalDataScanner,
    Source,
    SubjectErased,
    SubjectNotFound,
    Submission,
    UnknownPurpose,
    Vault,
)
from pledge.vault.rules import IdentityInvalid

app = typer.Typer(help="Pledge: the privacy policy as running software.", no_args_is_help=True)
policy_app = typer.Typer(
    help="Check, render, publish and compare policy files.", no_args_is_help=True
)
db_app = typer.Typer(help="Pledge's own database schema.", no_args_is_help=True)
apikey_app = typer.Typer(help="API keys for integrating services.", no_args_is_help=True)
keys_app = typer.Typer(help="Master keys and data keys.", no_args_is_help=True)
audit_app = typer.Typer(help="The hash-chained audit log.", no_args_is_help=True)
jobs_app = typer.Typer(
    help="Background jobs: what waits, what failed, retries.", no_args_is_help=True
)
subjects_app = typer.Typer(
    help="Read, find and erase subjects (staff, audited).", no_args_is_help=True
)
children_app = typer.Typer(
    help="Children: parents' consents, and subjects found to be children.", no_args_is_help=True
)
staff_app = typer.Typer(
    help="Admin-console accounts: add, list, change a role, reset, disable.",
    no_args_is_help=True,
)
requests_app = typer.Typer(
    help="Privacy requests: the queue by due date, decisions, records.", no_args_is_help=True
)
app.add_typer(policy_app, name="policy")
app.add_typer(db_app, name="db")
app.add_typer(apikey_app, name="apikey")
app.add_typer(keys_app, name="keys")
app.add_typer(audit_app, name="audit")
app.add_typer(subjects_app, name="subjects")
app.add_typer(jobs_app, name="jobs")
app.add_typer(requests_app, name="requests")
app.add_typer(staff_app, name="staff")
app.add_typer(children_app, name="children")
StaffOption = Annotated[
    str, typer.Option("--staff", help="The staff member acting (recorded in the audit log).")
]

HostOption = Annotated[str, typer.Option(help="Address to listen on.")]
PortOption = Annotated[int, typer.Option(help="Port to listen on.", min=1, max=65535)]
PolicyFile = Annotated[Path, typer.Argument(help="A policy YAML file.", dir_okay=False)]


class RenderFormat(StrEnum):
    """Formats `pledge policy render` writes."""

    HTML = "html"
    MD = "md"


def _fail(message: str, code: int = 2) -> typer.Exit:
    typer.echo(message, err=True)
    return typer.Exit(code)


def _settings() -> Settings:
    try:
        return Settings()
    except ValidationError as error:
        problems = "; ".join(str(e["msg"]).removeprefix("Value error, ") for e in error.errors())
        raise _fail(f"pledge: invalid settings: {problems}") from None


def _build_runtime(settings: Settings) -> Runtime:
    """The runtime, or a clear message (never a traceback) when keys or databases fail."""
    try:
        return Runtime.build(settings)
    except (OSError, ValueError, KeyUnavailable, pkcs11.PKCS11Error) as error:
        raise _fail(f"pledge: cannot open the keys or databases: {error}") from None


def _open_database(settings: Settings) -> Runtime:
    """The runtime on a current schema: upgraded when auto-migrate is on, else refused."""
    runtime = _build_runtime(settings)
    if settings.auto_migrate:
        upgrade_database(runtime.engine)
    elif not schema_is_current(runtime.engine):
        runtime.close()
        raise _fail("pledge: the database schema is not current: run `pledge db upgrade`")
    return runtime


def _load(path: Path) -> LoadedPolicy:

    try:
        return load_policy_file(path)
    except PolicyInvalid as invalid:
        raise _fail(str(invalid), code=1) from None


WorkerOption = Annotated[
    bool | None,
    typer.Option(
        "--worker/--no-worker",
        help="Also run background jobs in this process (default: yes with the SQLite queue).",
    ),
]


@app.command()
def serve(
    host: HostOption = "127.0.0.1",
    port: PortOption = 8000,
    migrate: Annotated[bool, typer.Option(help="Upgrade the schema first.")] = True,
    worker: WorkerOption = None,
    workers: Annotated[
        int, typer.Option(min=1, max=64, help="Server processes sharing the port.")
    ] = 1,
) -> None:
    """Serve Pledge on the configured database and policy."""
    settings = _settings()
    _run_server(
        settings,
        host,
        port,
        migrate=migrate and settings.auto_migrate,
        worker=worker,
        processes=workers,
    )


@app.command()
def worker(
    workers: Annotated[
        int | None, typer.Option(min=1, max=64, help="Threads (default PLEDGE_JOBS_WORKERS).")
    ] = None,
) -> None:
    """Run background jobs (mail, and later requests and sweeps) until stopped (Ctrl-C waits
    for running jobs; a second Ctrl-C stops at once, and those jobs run again later)."""
    settings = _settings()
    configure_logging(settings.log_level)
    runtime = _open_database(settings)
    services = build_services(runtime)
    count = workers or settings.jobs_workers
    typer.echo(f"pledge worker: {count} thread(s) on {_queue_name(settings.jobs_url)}")
    services.jobs.consumer(workers=count).run()


def _queue_name(url: str) -> str:
    """The queue's URL without a password."""
    from sqlalchemy.engine import make_url  # noqa: PLC0415 - only here, for display

    return make_url(url).render_as_string(hide_password=True)


@jobs_app.command("list")
def jobs_list(
    status: Annotated[JobStatus | None, typer.Option(help="Only jobs in this state.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=10_000)] = 50,
) -> None:
    """The newest jobs with their state, attempts, next attempt and last error."""
    with _open_database(_settings()) as runtime:
        queue = build_services(runtime).jobs
        counts = queue.counts()
        typer.echo("  ".join(f"{s.value}: {n}" for s, n in counts.items()))
        for job in queue.jobs(status=status, limit=limit):
            typer.echo(
                f"{job.id}  {job.kind:<16} {job.status.value:<9} "
                f"{job.attempts}/{job.max_attempts}  next {job.run_after:%Y-%m-%d %H:%M:%S}Z  "
                f"{job.last_error or ''}".rstrip()
            )


@jobs_app.command("retry")
def jobs_retry(job_id: str) -> None:
    """Give a failed job a new round of attempts."""
    with _open_database(_settings()) as runtime:
        try:
            job = build_services(runtime).jobs.retry(job_id)
        except JobNotFound:
            raise _fail("pledge: no job has this ID") from None
        except JobNotFailed as error:
            raise _fail(f"pledge: {error}") from None
    typer.echo(f"job {job.id} queued again ({job.max_attempts - job.attempts} more attempts)")


@jobs_app.command("sweep")
def jobs_sweep() -> None:
    """Hand to the queue again the jobs it lost or whose worker died (workers do this each
    minute on their own)."""
    with _open_database(_settings()) as runtime:
        count = build_services(runtime).jobs.sweep()
    typer.echo(f"{count} job(s) handed to the queue again")


@requests_app.command("list")
def requests_list(
    status: Annotated[
        RequestStatus | None, typer.Option(help="Only requests in this state.")
    ] = None,
    open_only: Annotated[bool, typer.Option("--open", help="Only requests not closed.")] = False,
    overdue: Annotated[bool, typer.Option(help="Only open requests past their due date.")] = False,
    limit: Annotated[int, typer.Option(min=1, max=10_000)] = 200,
) -> None:
    """Requests sorted by due date, soonest first, with overdue flags."""
    with _open_database(_settings()) as runtime:
        desk = build_services(runtime).requests
        today = desk.today()
        views = desk.queue(
            status=status, open_only=open_only, overdue_on=today if overdue else None, limit=limit
        )
        for view in views:
            flags = " OVERDUE" if view.overdue(today) else ""
            if view.acknowledgement_overdue(today):
                flags += " NOT-ACKNOWLEDGED"
            typer.echo(
                f"{view.id}  {view.kind.value:<20} {view.status.value:<21} "
                f"due {view.due.isoformat()}  {view.regime.value}  "
                f"{view.channel.value}{flags}"
            )
        if not views:
            typer.echo("no requests")


@requests_app.command("show")
def requests_show(request_id: str) -> None:
    """A request's state, deadlines and every move of its status (no personal data)."""
    with _open_database(_settings()) as runtime:
        desk = build_services(runtime).requests
        try:
            found = desk.record_of(request_id)
        except RequestNotFound:
            raise _fail("pledge: no request has this ID") from None
    view, moves, today = found.request, found.transitions, found.today
    typer.echo(f"request {view.id}: {view.kind.value}, {view.status.value}")
    typer.echo(f"  channel {view.channel.value}, law {view.regime.value}, tier {view.tier.value}")
    if view.by_agent:
        typer.echo("  made by an authorized agent")
    typer.echo(f"  received {view.received_on.isoformat()}")
    if view.acknowledge_by:
        done = view.acknowledged_at.date().isoformat() if view.acknowledged_at else "not yet"
        typer.echo(f"  acknowledge by {view.acknowledge_by.isoformat()} (done: {done})")
    typer.echo(
        f"  answer by {view.due.isoformat()}"
        + (" (extended)" if view.extended else "")
        + (" OVERDUE" if view.overdue(today) else "")
    )
    if view.denial_reason:
        typer.echo(f"  denied: {view.denial_reason}")
    if view.outcome:
        typer.echo(f"  outcome: {json.dumps(view.outcome, sort_keys=True)}")
    for move in moves:
        origin = move.from_status.value if move.from_status else "-"
        note = f"  ({move.note})" if move.note else ""
        typer.echo(
            f"  {move.at:%Y-%m-%d %H:%M:%S}Z  {origin} -> {move.to_status.value}  "
            f"by {move.actor}{note}"
        )


def _request_action(request_id: str, action: str, **arguments: str | None) -> None:
    with _open_database(_settings()) as runtime:
        desk = build_services(runtime).requests
        try:
            view = getattr(desk, action)(request_id, **arguments)
        except RequestNotFound:
            raise _fail("pledge: no request has this ID") from None
        except (TransitionRefused, ExtensionRefused, IntakeRefused) as error:
            raise _fail(f"pledge: {error}") from None
    typer.echo(f"request {view.id}: {view.status.value}, due {view.due.isoformat()}")


@requests_app.command("approve")
def requests_approve(request_id: str, staff: StaffOption) -> None:
    """Start the work on a verified request that waited for staff approval."""
    _request_action(request_id, "approve", actor=f"staff:{staff}")


@requests_app.command("deny")
def requests_deny(
    request_id: str,
    staff: StaffOption,
    reason: Annotated[str, typer.Option(help="Told to the person, with how to appeal.")],
) -> None:
    """Deny a request; the person is told the reason and how to appeal."""
    _request_action(request_id, "deny", actor=f"staff:{staff}", reason=reason)


@requests_app.command("extend")
def requests_extend(
    request_id: str,
    staff: StaffOption,
    reason: Annotated[str, typer.Option(help="Why more time is needed; told to the person.")],
) -> None:
    """Extend the deadline once, within the first period; the person is told."""
    _request_action(request_id, "extend", actor=f"staff:{staff}", reason=reason)


@requests_app.command("verify")
def requests_verify(
    request_id: str,
    staff: StaffOption,
    note: Annotated[str, typer.Option(help="How identity was checked (never the values).")],
    subject: Annotated[
        str | None, typer.Option(help="The subject ID, for a request that came without e-mail.")
    ] = None,
) -> None:
    """Record that a staff member verified the person (a request by phone or post)."""
    _request_action(
        request_id, "staff_verify", actor=f"staff:{staff}", note=note, subject_id=subject
    )


@requests_app.command("acknowledge")
def requests_acknowledge(
    request_id: str,
    staff: StaffOption,
    note: Annotated[str, typer.Option(help="How it was acknowledged (a letter, a call).")],
) -> None:
    """Record that a request received by post or phone was acknowledged by staff."""
    _request_action(request_id, "acknowledge", actor=f"staff:{staff}", note=note)


@requests_app.command("export")
def requests_export(
    output: Annotated[Path, typer.Argument(help="The CSV file to write.", dir_okay=False)],
    since: Annotated[
        str | None, typer.Option(help="Only requests received on or after this date (YYYY-MM-DD).")
    ] = None,
) -> None:
    """Write the request records (no personal data) as CSV."""
    try:
        start = dt.date.fromisoformat(since) if since else None
    except ValueError:
        raise _fail("pledge: --since must be a date, YYYY-MM-DD") from None
    with _open_database(_settings()) as runtime:
        desk = build_services(runtime).requests
        rows = 0
        with output.open("w", encoding="utf-8", newline="") as target:
            for line in desk.export_csv(since=start):
                target.write(line)
                rows += 1
    typer.echo(f"{rows - 1} request(s) written to {output}")


def _new_password(from_stdin: bool) -> str:
    """A new password: the first line of standard input, or typed twice at a hidden prompt."""
    if from_stdin:
        return sys.stdin.readline().rstrip("\n")
    first = getpass.getpass("Password (12 characters or more): ")
    if getpass.getpass("The same again: ") != first:
        raise _fail("pledge: the two passwords differ")
    return first


def _show_enrolment(enrolment: Enrolment) -> None:
    member = enrolment.member
    typer.echo(f"staff {member.username}: {member.role.value}")
    typer.echo("Their authenticator app needs this TOTP secret; it is not shown again:")
    typer.echo(f"  secret: {enrolment.totp_secret}")
    typer.echo(f"  uri:    {enrolment.totp_uri}")


PasswordStdin = Annotated[
    bool,
    typer.Option("--password-stdin", help="Read the password from standard input's first line."),
]


@staff_app.command("add")
def staff_add(
    username: str,
    role: Annotated[Role, typer.Option(help="What the account may do in the console.")],
    staff: StaffOption,
    password_stdin: PasswordStdin = False,
) -> None:
    """Add a console account; prints its TOTP secret once."""
    password = _new_password(password_stdin)
    with _open_database(_settings()) as runtime:
        directory = build_services(runtime).staff
        try:
            enrolment = directory.add(username, role, password, actor=f"staff:{staff}")
        except AccountRefused as refused:
            raise _fail(f"pledge: {refused}") from None
    _show_enrolment(enrolment)


@staff_app.command("list")
def staff_list() -> None:
    """Every console account with its role and state."""
    with _open_database(_settings()) as runtime:
        members = build_services(runtime).staff.members()
    for member in members:
        state = "disabled" if member.disabled else "locked" if member.locked_until else "active"
        typer.echo(f"{member.username:<20} {member.role.value:<16} {state}")
    if not members:
        typer.echo("no staff accounts: add one with `pledge staff add`")


@staff_app.command("role")
def staff_role(username: str, role: Role, staff: StaffOption) -> None:
    """Give an account another role."""
    with _open_database(_settings()) as runtime:
        try:
            member = build_services(runtime).staff.set_role(username, role, actor=f"staff:{staff}")
        except StaffNotFound:
            raise _fail(f"pledge: no staff account '{username}'") from None
    typer.echo(f"staff {member.username}: {member.role.value}")


@staff_app.command("reset")
def staff_reset(username: str, staff: StaffOption, password_stdin: PasswordStdin = False) -> None:
    """A new password and TOTP secret for an account (a lost phone); unlocks it and ends its
    sessions."""
    password = _new_password(password_stdin)
    with _open_database(_settings()) as runtime:
        try:
            enrolment = build_services(runtime).staff.reset(
                username, password, actor=f"staff:{staff}"
            )
        except StaffNotFound:
            raise _fail(f"pledge: no staff account '{username}'") from None
        except AccountRefused as refused:
            raise _fail(f"pledge: {refused}") from None
    _show_enrolment(enrolment)


@staff_app.command("disable")
def staff_disable(username: str, staff: StaffOption) -> None:
    """Close an account: no more logins; its sessions end now."""
    with _open_database(_settings()) as runtime:
        try:
            build_services(runtime).staff.disable(username, actor=f"staff:{staff}")
        except StaffNotFound:
            raise _fail(f"pledge: no staff account '{username}'") from None
    typer.echo(f"staff {username}: disabled")


@children_app.command("list")
def children_list() -> None:
    """Parents' consents waiting (for a parent or a check) or under a child's account."""
    with _open_database(_settings()) as runtime:
        views = build_services(runtime).parental_consents.waiting()
    for view in views:
        child = view.child_subject_id or "-"
        typer.echo(
            f"{view.id}  {view.status:<10} {view.reason:<10} window ends "
            f"{view.expires_at:%Y-%m-%d}  child {child}"
        )
    if not views:
        typer.echo("no parental consents")


@children_app.command("flag")
def children_flag(
    subject_id: str,
    staff: StaffOption,
    reason: Annotated[str, typer.Option(help="How it was found out (no personal data).")],
    parent_email: Annotated[
        str | None, typer.Option(help="The parent's address, to ask for consent.")
    ] = None,
) -> None:
    """A subject found to be a child: frozen now, erased when the window ends unless a parent
    consents."""
    with _open_database(_settings()) as runtime:
        consents = build_services(runtime).parental_consents
        try:
            consent_id = consents.flag_child(
                subject_id, actor=f"staff:{staff}", reason=reason, parent_email=parent_email
            )
        except (SubjectNotFound, SubjectErased):
            raise _fail("pledge: no live subject has this ID") from None
        except (IdentityInvalid, ConsentRefusedHere) as refused:
            raise _fail(f"pledge: {refused}") from None
        view = consents.view_for_staff(consent_id)
    typer.echo(
        f"subject {subject_id} frozen; consent {consent_id}, erased on "
        f"{view.expires_at:%Y-%m-%d} unless a parent consents"
    )


@app.command()
def demo(
    host: HostOption = "127.0.0.1",
    port: PortOption = 8000,
    mailbox: Annotated[
        bool,
        typer.Option(help="Print the mail Pledge sends here, from a local SMTP server."),
    ] = True,
) -> None:
    """Load the reference policy and demo data into the configured database, then serve."""

    settings = _settings()
    runtime = _open_database(settings)
    summary = load_demo(runtime)
    state = "published" if summary.policy_created else "already published"
    typer.echo(f"demo: reference policy {summary.policy.version} {state}")
    typer.echo(f"demo: {summary.people_created} demo people collected into the vault")
    typer.echo(f"demo: API key (all scopes) for trying the API: {summary.api_key}")
    console = summary.console
    typer.echo(
        f"demo: admin console at http://{host}:{port}/console: username "
        f"{console.member.username}, password {summary.console_password}"
    )
    typer.echo(
        f"demo: its TOTP secret is {console.totp_secret}; add it to an authenticator app, or "
        'get the current code with: .venv/bin/python -c "import pyotp; '
        f"print(pyotp.TOTP('{console.totp_secret}').now())\""
    )
    inbox = _demo_mailbox(settings) if mailbox else None
    try:
        _run_server(settings, host, port, migrate=False, runtime=runtime)
    finally:
        if inbox is not None:
            inbox.stop()


def _demo_mailbox(settings: Settings) -> DemoMailbox | None:
    """The demo's SMTP server on PLEDGE_SMTP_HOST:PLEDGE_SMTP_PORT, if it can listen there."""
    try:
        inbox = DemoMailbox(settings.smtp_host, settings.smtp_port, typer.echo)
        inbox.start()
    except ImportError:
        typer.echo("demo: no demo mailbox (install aiosmtpd to see the mail Pledge sends)")
        return None
    except (OSError, RuntimeError) as error:
        typer.echo(f"demo: no demo mailbox on port {settings.smtp_port}: {error}")
        return None
    typer.echo(f"demo: mail Pledge sends is printed here (SMTP on port {settings.smtp_port})")
    return inbox


def _run_server(
    settings: Settings,
    host: str,
    port: int,
    *,
    migrate: bool,
    runtime: Runtime | None = None,
    worker: bool | None = None,
    processes: int = 1,
) -> None:

    configure_logging(settings.log_level)
    runtime = runtime or _build_runtime(settings)
    if migrate:
        upgrade_database(runtime.engine)
    services: Services = build_services(runtime)
    try:
        application = create_app(settings, runtime, services)
    except PolicyInvalid as invalid:
        raise _fail(f"pledge: refusing to start: {invalid}") from None
    except DatabaseNotReady as not_ready:
        raise _fail(f"pledge: refusing to start: {not_ready}") from None
    if worker is None:
        worker = settings.jobs_url.startswith("sqlite")
    consumer = services.jobs.consumer(workers=settings.jobs_workers) if worker else None
    if consumer is not None:
        consumer.start()
        typer.echo(f"Background jobs run in this process ({settings.jobs_workers} threads)")
    typer.echo(f"Pledge on http://{host}:{port}  (API docs /docs, privacy policy /privacy)")
    try:
        if processes == 1:
            uvicorn.run(application, host=host, port=port, access_log=False, log_config=None)
        else:
            # The checks above ran once, here; each server process builds its own app (and
            # its own database connections) from the same environment.
            typer.echo(f"{processes} server processes")
            uvicorn.run(
                "pledge.app:app_from_environment",
                factory=True,
                workers=processes,
                host=host,
                port=port,
                access_log=False,
                log_config=None,
            )
    finally:
        if consumer is not None:
            consumer.stop(graceful=True)


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Upgrade the database schema to the newest migration."""

    with _build_runtime(_settings()) as runtime:
        upgrade_database(runtime.engine)
    typer.echo("database schema is current")


@policy_app.command("check")
def policy_check(file: PolicyFile) -> None:
    """Validate a policy file; print every problem and exit 1 if there is any."""
    loaded = _load(file)
    document = loaded.document
    typer.echo(
        f"{file}: valid (version {document.version}, effective {document.effective_date}, "
        f"{len(document.data_categories)} categories, {len(document.purposes)} purposes, "
        f"{len(document.collection_points)} collection points, "
        f"{len(document.recipients)} recipients)"
    )


@policy_app.command("render")
def policy_render(
    file: PolicyFile,
    output_format: Annotated[
        RenderFormat, typer.Option("--format", "-f", help="Output format.")
    ] = RenderFormat.HTML,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write here, not stdout.")
    ] = None,
) -> None:
    """Write the human-readable privacy policy generated from a policy file."""
    document = _load(file).document
    text = render_policy(document, output_format.value, public_url=_settings().public_url)
    _write(text, output)


@policy_app.command("publish")
def policy_publish(
    file: PolicyFile,
    by: Annotated[str | None, typer.Option(help="Who publishes (default: the OS user).")] = None,
) -> None:
    """Store a policy file as an immutable version (publishing the same content is a no-op)."""

    loaded = _load(file)
    with _open_database(_settings()) as runtime:
        outcome = publish_policy(runtime.sessions, loaded, published_by=by or getpass.getuser())
    version = outcome.version
    if outcome.created:
        typer.echo(
            f"published version {version.version} as #{version.id} ({version.content_hash[:12]})"
        )
    else:
        typer.echo(f"unchanged: this content is already version #{version.id} ({version.version})")


@policy_app.command("versions")
def policy_versions() -> None:
    """List published versions, newest first."""

    with _open_database(_settings()) as runtime:
        versions = list_versions(runtime.sessions)
    for v in versions:
        material = " material" if v.material else ""
        typer.echo(
            f"#{v.id}  {v.version}  effective {v.effective_date}  {v.content_hash[:12]}{material}"
        )


@policy_app.command("diff")
def policy_diff(
    old: Annotated[
        str, typer.Argument(help="A policy file, or a published version (#id, label or hash).")
    ],
    new: Annotated[
        str, typer.Argument(help="A policy file, or a published version (#id, label or hash).")
    ],
) -> None:
    """List what changed between two policies: categories, purposes, recipients, retention."""

    before, after = _resolve(old), _resolve(new)
    changes = diff_policies(before, after) + retention_changes(before, after)
    for change in changes:
        typer.echo(str(change))
    if not changes:
        typer.echo("no differences")


def _resolve(ref: str) -> PolicyDocument:
    if Path(ref).is_file():
        return _load(Path(ref)).document

    with _open_database(_settings()) as runtime:
        found = find_version(runtime.sessions, ref.removeprefix("#"))
    if found is None:
        raise _fail(f"pledge: '{ref}' is neither a file nor a published version")
    return found[1].document


@policy_app.command("export-fideslang")
def policy_export_fideslang(
    file: PolicyFile,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write here, not stdout.")
    ] = None,
) -> None:
    """Write a fideslang manifest (a system and its privacy declarations) for a policy file."""

    manifest = export_fideslang(_load(file).document)
    _write(yaml.safe_dump(manifest, sort_keys=False, allow_unicode=True), output)


def _write(text: str, output: Path | None) -> None:
    if output is None:
        sys.stdout.write(text)
    else:
        output.write_text(text, encoding="utf-8")
        typer.echo(f"wrote {output}", err=True)


@apikey_app.command("create")
def apikey_create(
    name: Annotated[str, typer.Argument(help="What the key is for, e.g. 'shop backend'.")],
    scope: Annotated[list[str], typer.Option("--scope", "-s", help="A scope; repeat for several.")],
    by: Annotated[str | None, typer.Option(help="Who creates it (default: the OS user).")] = None,
) -> None:
    """Create an API key and print it once; only its hash is stored."""
    with _open_database(_settings()) as runtime:
        try:
            info, token = create_api_key(
                runtime.sessions,
                name=name,
                scopes=scope,
                created_by=f"staff:{by or getpass.getuser()}",
            )
        except InvalidScopes as invalid:
            raise _fail(f"pledge: {invalid}") from None
    typer.echo(f"key #{info.id} '{info.name}' with scopes {' '.join(info.scopes)}")
    typer.echo("Store it now; it is not shown again:")
    typer.echo(token)


@apikey_app.command("list")
def apikey_list() -> None:
    """List API keys (never their secrets)."""
    with _open_database(_settings()) as runtime:
        keys = list_api_keys(runtime.sessions)
    for key in keys:
        state = "revoked" if key.revoked else "active"
        typer.echo(f"#{key.id}  {key.name}  pledge_{key.prefix}_…  {state}  {' '.join(key.scopes)}")


@apikey_app.command("revoke")
def apikey_revoke(key_id: int, by: Annotated[str | None, typer.Option()] = None) -> None:
    """Revoke an API key at once."""
    with _open_database(_settings()) as runtime:
        done = revoke_api_key(
            runtime.sessions, key_id, revoked_by=f"staff:{by or getpass.getuser()}"
        )
    if not done:
        raise _fail(f"pledge: no active API key #{key_id}")
    typer.echo(f"key #{key_id} revoked")


@keys_app.command("rotate")
def keys_rotate(
    retire_previous: Annotated[
        bool, typer.Option(help="Destroy master keys no data key uses any more.")
    ] = False,
) -> None:
    """Make a new master key active and re-wrap every data key under it; values are untouched."""
    with _open_database(_settings()) as runtime:
        report = runtime.keyring.rotate_master_key(retire_previous=retire_previous)
        with runtime.sessions() as session, session.begin():
            record(
                session,
                actor=f"staff:{getpass.getuser()}",
                action="keys.rotate",
                details={
                    "new_key": report.new_key_id,
                    "rewrapped": report.rewrapped,
                    "retired": list(report.retired),
                },
            )
    typer.echo(f"master key {report.new_key_id} active; {report.rewrapped} data keys re-wrapped")
    for key_id in report.retired:
        typer.echo(f"retired {key_id}")


@keys_app.command("status")
def keys_status() -> None:
    """Show the active master key and how many data keys each master key wraps."""
    with _open_database(_settings()) as runtime:
        active = runtime.keyring.provider.active_key_id
        for key_id, count in sorted(runtime.keyring.master_keys_in_use().items()):
            typer.echo(f"{key_id}  {count} data keys{'  (active)' if key_id == active else ''}")
        typer.echo(f"active: {active}")


@audit_app.command("verify")
def audit_verify() -> None:
    """Check the audit log's hash chain; name the first bad entry and exit 1 if it is broken."""
    with _open_database(_settings()) as runtime:
        count, problem = verify_chain(runtime.sessions)
        seq, digest = chain_head(runtime.sessions)
    if problem is not None:
        raise _fail(f"audit log broken at {problem}", code=1)
    typer.echo(f"audit log intact: {count} entries")
    typer.echo(f"head: entry {seq} {digest}  (keep this line outside the database to anchor it)")


@app.command()
def collect(
    collection_point: Annotated[str, typer.Argument(help="A collection point of the policy.")],
    staff: StaffOption,
    fields_json: Annotated[
        Path, typer.Option("--fields-json", help="A JSON object of field values; '-' reads stdin.")
    ] = Path("-"),
    identity: Annotated[
        str | None, typer.Option(help="kind:value, e.g. email:jane@example.com.")
    ] = None,
    subject: Annotated[str | None, typer.Option(help="Add to this subject ID.")] = None,
) -> None:
    """Enter data received by phone, letter or meeting (marked as a staff entry).

    Values are read as JSON from a file or stdin, never from the command line, so they do not
    end up in the shell's history.
    """
    raw = sys.stdin.read() if str(fields_json) == "-" else fields_json.read_text(encoding="utf-8")
    try:
        fields = json.loads(raw)
    except json.JSONDecodeError as error:
        raise _fail(f"pledge: the fields are not JSON: {error.msg}") from None
    if not isinstance(fields, dict) or not all(isinstance(v, str) for v in fields.values()):
        raise _fail("pledge: the fields must be a JSON object of strings")
    parsed_identity = _identity(identity) if identity is not None else None
    submission = Submission(
        collection_point=collection_point,
        fields=fields,
        source=Source.STAFF_ENTRY,
        identity=parsed_identity,
        subject_id=subject,
        entered_by=staff,
    )
    with _open_database(_settings()) as runtime:
        try:
            (result,) = _vault(runtime).collect([submission], actor=f"staff:{staff}")
        except CollectionRefused as refused:
            raise _fail(f"pledge: refused, nothing stored: {refused}", code=1) from None
        except (SubjectErased, SubjectNotFound, NoPolicyInForce) as error:
            raise _fail(f"pledge: refused, nothing stored: {type(error).__name__}") from None
    state = "new subject" if result.created else "existing subject"
    typer.echo(f"stored {len(result.value_ids)} values for {state} {result.subject_id}")


@subjects_app.command("read")
def subjects_read(
    subject_id: str,
    purpose: Annotated[str, typer.Option(help="The purpose the data is read for.")],
    staff: StaffOption,
) -> None:
    """Print a subject's data in the categories a purpose may use, as JSON (audited)."""
    with _open_database(_settings()) as runtime:
        try:
            data = _vault(runtime).read(subject_id, purpose, actor=f"staff:{staff}")
        except UnknownPurpose:
            raise _fail(f"pledge: '{purpose}' is not a purpose of the policy in force") from None
        except SubjectNotFound:
            raise _fail("pledge: no subject has this ID") from None
        except SubjectErased:
            raise _fail("pledge: this subject was erased") from None
        except NoPolicyInForce as error:
            raise _fail(f"pledge: {error}") from None
    payload = {
        "subject_id": data.subject_id,
        "purpose": data.purpose,
        "policy_version": data.policy_version,
        "categories": list(data.categories),
        "values": [
            {
                k: (v.isoformat() if hasattr(v, "isoformat") else v)
                for k, v in value.__dict__.items()
            }
            for value in data.values
        ],
    }
    typer.echo(json.dumps(payload, indent=2, ensure_ascii=False))


@subjects_app.command("resolve")
def subjects_resolve(
    identity: Annotated[str, typer.Argument(help="kind:value, e.g. email:jane@example.com.")],
    staff: StaffOption,
) -> None:
    """Print the subject ID an identity belongs to (audited)."""
    kind, value = _identity(identity)
    with _open_database(_settings()) as runtime:
        try:
            subject_id = _vault(runtime).resolve(kind, value, actor=f"staff:{staff}")
        except ValueError as invalid:
            raise _fail(f"pledge: {invalid}") from None
    if subject_id is None:
        raise _fail("pledge: no subject has this identity", code=1)
    typer.echo(subject_id)


@subjects_app.command("erase")
def subjects_erase(
    subject_id: str,
    reason: Annotated[str, typer.Option(help="Why, for the audit log (no personal data).")],
    staff: StaffOption,
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation.")] = False,
) -> None:
    """Erase a subject: destroy its data key, identities and values. Cannot be undone."""
    if not yes:
        typer.confirm(f"Erase subject {subject_id} for good?", abort=True)
    with _open_database(_settings()) as runtime:
        try:
            erased = _vault(runtime).shred(subject_id, actor=f"staff:{staff}", reason=reason)
        except SubjectNotFound:
            raise _fail("pledge: no subject has this ID") from None
    typer.echo("erased" if erased else "already erased")


def _identity(text: str) -> tuple[IdentityKind, str]:
    """`kind:value` from the command line, e.g. `email:jane@example.com`."""
    kind, _, value = text.partition(":")
    if kind not in IdentityKind.__members__.values():
        raise _fail(f"pledge: identity kind must be one of {', '.join(IdentityKind)}")
    return IdentityKind(kind), value


def _vault(runtime: Runtime) -> Vault:
    return Vault(runtime.sessions, runtime.keyring, PersonalDataScanner())


def main() -> None:
    """Entry point of the `pledge` console script."""
    app()


if __name__ == "__main__":
    main()
