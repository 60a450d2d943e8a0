"""The `pledge` command: each command parses its options and calls one service."""

from __future__ import annotations

import getpass
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
import uvicorn
import yaml
from pydantic import ValidationError

from pledge.app import DatabaseNotReady, create_app
from pledge.config import Settings
from pledge.demo import load_demo
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
from pledge.runtime import Runtime

app = typer.Typer(help="Pledge: the privacy policy as running software.", no_args_is_help=True)
policy_app = typer.Typer(
    help="Check, render, publish and compare policy files.", no_args_is_help=True
)
db_app = typer.Typer(help="Pledge's own database schema.", no_args_is_help=True)
app.add_typer(policy_app, name="policy")
app.add_typer(db_app, name="db")

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


def _open_database(settings: Settings) -> Runtime:
    """The runtime on a current schema: upgraded when auto-migrate is on, else refused."""
    runtime = Runtime.build(settings)
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


@app.command()
def serve(
    host: HostOption = "127.0.0.1",
    port: PortOption = 8000,
    migrate: Annotated[bool, typer.Option(help="Upgrade the schema first.")] = True,
) -> None:
    """Serve Pledge on the configured database and policy."""
    settings = _settings()
    _run_server(settings, host, port, migrate=migrate and settings.auto_migrate)


@app.command()
def demo(host: HostOption = "127.0.0.1", port: PortOption = 8000) -> None:
    """Load the reference policy and demo data into the configured database, then serve."""

    settings = _settings()
    runtime = _open_database(settings)
    summary = load_demo(runtime)
    state = "published" if summary.policy_created else "already published"
    typer.echo(f"demo: reference policy {summary.policy.version} {state}")
    _run_server(settings, host, port, migrate=False, runtime=runtime)


def _run_server(
    settings: Settings, host: str, port: int, *, migrate: bool, runtime: Runtime | None = None
) -> None:

    configure_logging(settings.log_level)
    runtime = runtime or Runtime.build(settings)
    if migrate:
        upgrade_database(runtime.engine)
    try:
        application = create_app(settings, runtime)
    except PolicyInvalid as invalid:
        raise _fail(f"pledge: refusing to start: {invalid}") from None
    except DatabaseNotReady as not_ready:
        raise _fail(f"pledge: refusing to start: {not_ready}") from None
    typer.echo(f"Pledge on http://{host}:{port}  (API docs /docs, privacy policy /privacy)")
    uvicorn.run(application, host=host, port=port, access_log=False, log_config=None)


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Upgrade the database schema to the newest migration."""

    with Runtime.build(_settings()) as runtime:
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


def main() -> None:
    """Entry point of the `pledge` console script."""
    app()


if __name__ == "__main__":
    main()
