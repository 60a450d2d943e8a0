"""The docs describe what exists: a route or command nobody documented fails the build."""

from __future__ import annotations

from pathlib import Path

import pytest
import typer.main
from fastapi.routing import APIRoute

from pledge.children import api_routes as children_routes
from pledge.children import console_routes as children_console
from pledge.children import page_routes as children_pages
from pledge.cli import app as cli_app
from pledge.consent import api_routes as consent_routes
from pledge.consent import banner_routes
from pledge.consent import page_routes as consent_pages
from pledge.jobs import api_routes as job_routes
from pledge.mail import api_routes as mail_routes
from pledge.mail import page_routes as mail_pages
from pledge.policy import api_routes, page_routes
from pledge.privacy_center import children_page_routes as center_children_pages
from pledge.privacy_center import page_routes as center_pages
from pledge.privacy_center import request_page_routes as center_request_pages
from pledge.requests import api_routes as request_routes
from pledge.requests import console_routes as request_console
from pledge.staff import page_routes as staff_console
from pledge.vault import api_routes as vault_routes

DOCS = Path(__file__).resolve().parents[3] / "docs"
README = DOCS.parent / "README.md"

ROUTES = sorted(
    (method, route.path)
    for router in (
        api_routes,
        page_routes,
        vault_routes,
        consent_routes,
        consent_pages,
        banner_routes,
        mail_routes,
        mail_pages,
        job_routes,
        center_pages,
        center_request_pages,
        center_children_pages,
        request_routes,
        children_routes,
        children_pages,
    )
    for route in router.routes
    if isinstance(route, APIRoute)
    for method in route.methods
)


CONSOLE_ROUTES = sorted(
    (method, route.path)
    for router in (staff_console, request_console, children_console)
    for route in router.routes
    if isinstance(route, APIRoute)
    for method in route.methods
)


def cli_commands() -> list[str]:
    group = typer.main.get_group(cli_app)
    names = []
    for name, command in group.commands.items():
        sub = getattr(command, "commands", None)
        names.extend(f"pledge {name} {s}" for s in sub) if sub else names.append(f"pledge {name}")
    return sorted(names)


@pytest.mark.parametrize(("method", "path"), ROUTES)
def test_every_route_is_described_in_the_api_doc(method: str, path: str) -> None:
    assert f"`{method} {path}`" in (DOCS / "api.md").read_text()


@pytest.mark.parametrize(("method", "path"), CONSOLE_ROUTES)
def test_every_console_page_is_described_in_the_console_doc(method: str, path: str) -> None:
    assert f"`{method} {path}`" in (DOCS / "console.md").read_text()


@pytest.mark.parametrize("command", cli_commands())
def test_every_command_is_shown_in_the_readme(command: str) -> None:
    assert command in README.read_text()
