"""Every page and form of the admin console against the role matrix, for every role.

`MATRIX` is the specification: what each console route needs. The tests check that it lists
exactly the app's console routes, that each route's guard declares that permission, and then,
over HTTP, that each role gets exactly the routes its permissions allow (`403` for the others)
and that nobody signed out gets any."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pyotp
import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from pledge.app import Services
from pledge.policy.document import RequestKind
from pledge.requests import Channel, Intake
from pledge.staff import ROLE_PERMISSIONS, Permission, Role
from pledge.staff.rules import form_token

PUBLIC = "public"
ANY_ROLE = "any role"

MATRIX: dict[tuple[str, str], Permission | str] = {
    ("GET", "/console/login"): PUBLIC,
    ("POST", "/console/login"): PUBLIC,
    ("POST", "/console/logout"): ANY_ROLE,
    ("GET", "/console"): ANY_ROLE,
    ("GET", "/console/audit"): Permission.READ_AUDIT,
    ("POST", "/console/audit/verify"): Permission.READ_AUDIT,
    ("GET", "/console/staff"): Permission.MANAGE_STAFF,
    ("POST", "/console/staff"): Permission.MANAGE_STAFF,
    ("POST", "/console/staff/{username}/role"): Permission.MANAGE_STAFF,
    ("POST", "/console/staff/{username}/disable"): Permission.MANAGE_STAFF,
    ("POST", "/console/staff/{username}/reset"): Permission.MANAGE_STAFF,
    ("GET", "/console/children"): Permission.MANAGE_CHILDREN,
    ("GET", "/console/children/{consent_id}/evidence"): Permission.MANAGE_CHILDREN,
    ("POST", "/console/children/{consent_id}/review"): Permission.MANAGE_CHILDREN,
    ("POST", "/console/children/flag"): Permission.MANAGE_CHILDREN,
    ("GET", "/console/requests"): Permission.VIEW_QUEUE,
    ("GET", "/console/requests/new"): Permission.ENTER_REQUEST,
    ("POST", "/console/requests"): Permission.ENTER_REQUEST,
    ("GET", "/console/requests/export.csv"): Permission.EXPORT_RECORDS,
    ("GET", "/console/requests/{request_id}"): Permission.VIEW_QUEUE,
    ("POST", "/console/requests/{request_id}/details"): Permission.VIEW_REQUESTER,
    ("POST", "/console/requests/{request_id}/package"): Permission.VIEW_REQUESTER,
    ("POST", "/console/requests/{request_id}/verify"): Permission.VERIFY_REQUEST,
    ("POST", "/console/requests/{request_id}/acknowledge"): Permission.VERIFY_REQUEST,
    ("POST", "/console/requests/{request_id}/approve"): Permission.DECIDE_REQUEST,
    ("POST", "/console/requests/{request_id}/deny"): Permission.DECIDE_REQUEST,
    ("POST", "/console/requests/{request_id}/extend"): Permission.DECIDE_REQUEST,
}

FORMS: dict[str, dict[str, str]] = {
    "/console/login": {"username": "x", "password": "y", "code": "000000"},
    "/console/staff": {"username": "newbie", "role": "auditor", "password": "a long password!"},
    "/console/staff/{username}/role": {"role": "auditor"},
    "/console/staff/{username}/reset": {"password": "another long password"},
    "/console/requests": {"kind": "access", "channel": "phone", "residence": "US-CA"},
    "/console/requests/{request_id}/verify": {"note": "called back on the number held"},
    "/console/requests/{request_id}/acknowledge": {"note": "letter sent"},
    "/console/requests/{request_id}/deny": {"reason": "no such person"},
    "/console/requests/{request_id}/extend": {"reason": "many systems to search"},
}


def app_routes(client: TestClient) -> list[APIRoute]:
    """Every route the app serves; FastAPI keeps an included router as one entry holding it."""
    found: list[APIRoute] = []
    pending = list(client.app.routes)  # type: ignore[attr-defined]
    while pending:
        route = pending.pop()
        if isinstance(route, APIRoute):
            found.append(route)
        elif hasattr(route, "original_router"):
            pending.extend(route.original_router.routes)
    return found


def console_routes(client: TestClient) -> set[tuple[str, str]]:
    return {
        (method, route.path)
        for route in app_routes(client)
        if route.path.startswith("/console")
        for method in route.methods
    }


def declared_permission(client: TestClient, method: str, path: str) -> Permission | str:
    for route in app_routes(client):
        if route.path == path and method in route.methods:
            guards = [
                d.call
                for d in route.dependant.dependencies
                if d.call is not None and hasattr(d.call, "permission")
            ]
            if not guards:
                return PUBLIC
            (guard,) = guards
            permission: Permission | None = guard.permission  # type: ignore[attr-defined]
            return ANY_ROLE if permission is None else permission
    raise AssertionError(f"no route {method} {path}")


def signed_in(services: Services, role: Role, username: str) -> str:
    """A console session token for a new account of `role`."""
    enrolment = services.staff.add(username, role, "correct horse battery", actor="tests")
    token = services.staff.log_in(
        username, "correct horse battery", now_code(enrolment.totp_secret)
    )
    assert token is not None
    return token


def now_code(secret: str) -> str:
    return pyotp.TOTP(secret).at(dt.datetime.now(dt.UTC))


def call(
    client: TestClient, method: str, path: str, token: str | None, secret: bytes, **ids: str
) -> Any:
    url = path.format(**ids)
    headers = {"Cookie": f"pledge_staff={token}"} if token else {}
    if method == "GET":
        return client.get(url, headers=headers, follow_redirects=False)
    data = dict(FORMS.get(path, {}))
    if token:
        data["form_token"] = form_token(secret, token)
    return client.post(url, data=data, headers=headers, follow_redirects=False)


@pytest.fixture
def request_id(services: Services) -> str:
    return services.requests.submit(
        Intake(
            kind=RequestKind.DELETION,
            channel=Channel.POST,
            residence="US-CA",
            email=None,
            entered_by="tests",
        ),
        actor="tests",
    )


def test_the_matrix_lists_exactly_the_consoles_routes(client: TestClient) -> None:
    assert console_routes(client) == set(MATRIX)


def test_each_route_declares_the_permission_the_matrix_gives_it(client: TestClient) -> None:
    for (method, path), expected in MATRIX.items():
        assert declared_permission(client, method, path) == expected, (method, path)


@pytest.mark.parametrize("role", list(Role))
def test_each_role_gets_exactly_what_its_permissions_allow(
    client: TestClient, services: Services, request_id: str, role: Role
) -> None:
    settings = client.app.state.runtime.settings  # type: ignore[attr-defined]
    key = settings.secret_key.get_secret_value().encode()
    services.staff.add("target", Role.SUPPORT_AGENT, "a sound passphrase here", actor="tests")
    token = signed_in(services, role, "tester")
    allowed = ROLE_PERMISSIONS[role]
    for (method, path), needs in MATRIX.items():
        if needs == PUBLIC or path == "/console/logout":
            continue
        answer = call(
            client,
            method,
            path,
            token,
            key,
            request_id=request_id,
            username="target",
            consent_id="00000000-0000-4000-8000-000000000000",
        )
        refused = answer.status_code == 403
        may = needs == ANY_ROLE or needs in allowed
        assert refused is not may, (role, method, path, answer.status_code)
        assert answer.status_code != 303 or "/console/login" not in answer.headers["location"]
    answer = call(client, "POST", "/console/logout", token, key)
    assert answer.status_code == 303
    assert call(client, "GET", "/console", token, key).status_code == 303  # signed out


def test_nobody_signed_out_gets_any_page(
    client: TestClient, services: Services, request_id: str
) -> None:
    for (method, path), needs in MATRIX.items():
        if needs == PUBLIC:
            continue
        answer = call(
            client,
            method,
            path,
            None,
            b"",
            request_id=request_id,
            username="target",
            consent_id="00000000-0000-4000-8000-000000000000",
        )
        assert answer.status_code == 303, (method, path)
        assert answer.headers["location"].startswith("/console/login")


def test_a_form_from_another_site_or_without_its_token_changes_nothing(
    client: TestClient, services: Services, request_id: str
) -> None:
    settings = client.app.state.runtime.settings  # type: ignore[attr-defined]
    key = settings.secret_key.get_secret_value().encode()
    token = signed_in(services, Role.PRIVACY_OFFICER, "officer")
    url = f"/console/requests/{request_id}/deny"
    cookie = {"Cookie": f"pledge_staff={token}"}
    forged = client.post(
        url,
        data={"reason": "x", "form_token": form_token(key, token)},
        headers={**cookie, "Origin": "https://evil.example"},
    )
    assert forged.status_code == 403
    tokenless = client.post(url, data={"reason": "x"}, headers=cookie)
    assert tokenless.status_code == 403
    assert services.requests.get(request_id).status.value == "awaiting_verification"
