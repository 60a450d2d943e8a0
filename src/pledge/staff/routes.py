"""The admin console's door and its own pages: login and logout, the audit log, and staff
accounts. Every console page, here and in other packages, is guarded by `require`, which
names the permission the page needs (the role matrix is `pledge.staff.rules`)."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import quote

import jinja2
from fastapi import APIRouter, Depends, Request, status
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData

from pledge.audit import recent_entries, verify_chain
from pledge.policy import current_version
from pledge.staff.rules import (
    SESSION_MAX,
    AccountRefused,
    Permission,
    Role,
    form_token,
    form_token_ok,
)
from pledge.staff.service import StaffDirectory, StaffNotFound, StaffView
from pledge.web import form_post_allowed, page_templates

pages = APIRouter(prefix="/console", tags=["admin console"], include_in_schema=False)
_templates = page_templates("pledge.staff")

COOKIE = "pledge_staff"
"""The console's session cookie: HttpOnly, SameSite=Strict, Path=/console."""
MAX_FORM_FIELDS = 50
_NEXT = re.compile(r"^/console(/[A-Za-z0-9/_.=&?%-]{0,300})?$")


class SignInNeeded(Exception):
    """No live console session: the visitor goes to the login page, then back."""

    def __init__(self, next_path: str) -> None:
        super().__init__(next_path)
        self.next_path = next_path


class NotAllowed(Exception):
    """The staff member's role does not allow the page, or the form is not theirs."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class Staff:
    """The staff member behind a console request, with their session's anti-forgery token."""

    member: StaffView
    form_token: str

    @property
    def actor(self) -> str:
        """How the audit log names them."""
        return self.member.actor


def directory_of(request: Request) -> StaffDirectory:
    """FastAPI dependency: the app's staff directory."""
    directory: StaffDirectory = request.app.state.staff
    return directory


DirectoryDep = Annotated[StaffDirectory, Depends(directory_of)]


def require(permission: Permission | None) -> Callable[[Request], Awaitable[Staff]]:
    """FastAPI dependency of a console route: the signed-in staff member, whose role must allow
    `permission` (None: any role). A POST must also come from Pledge's own origin and carry the
    session's anti-forgery token; nothing is read or changed otherwise."""

    async def staff_member(request: Request) -> Staff:
        directory = directory_of(request)
        token = request.cookies.get(COOKIE)
        member = await run_in_threadpool(directory.who, token)
        if member is None or token is None:
            raise SignInNeeded(_here(request))
        secret = _secret(request)
        if request.method == "POST":
            settings = request.app.state.runtime.settings
            if not form_post_allowed(settings.public_url, request.headers):
                raise NotAllowed("A form of another site may not post to the console.")
            form = await request.form(max_fields=MAX_FORM_FIELDS)
            if not form_token_ok(secret, token, form.get("form_token")):
                raise NotAllowed("This form has expired. Go back, reload the page and try again.")
        if permission is not None and not member.may(permission):
            raise NotAllowed(
                f"Your role ({member.role.value.replace('_', ' ')}) does not allow this page."
            )
        return Staff(member, form_token(secret, token))

    staff_member.permission = permission  # type: ignore[attr-defined]  # read by the role test
    return staff_member


async def console_form(request: Request) -> FormData:
    """A console form (already read and checked by `require`)."""
    return await request.form(max_fields=MAX_FORM_FIELDS)


ConsoleForm = Annotated[FormData, Depends(console_form)]


def console_page(
    request: Request,
    templates: jinja2.Environment,
    template: str,
    staff: Staff | None,
    code: int = 200,
    **values: Any,
) -> HTMLResponse:
    """A console page over the shared console layout; never cached, never framed."""
    found = current_version(request.app.state.runtime.sessions)
    organization = found[1].document.organization if found else None
    name = (organization.trade_name or organization.legal_name) if organization else "Pledge"
    html = templates.get_template(template).render(
        organization_name=name,
        member=None if staff is None else staff.member,
        form_token=None if staff is None else staff.form_token,
        **values,
    )
    return HTMLResponse(
        html,
        status_code=code,
        headers={"Cache-Control": "no-store", "X-Frame-Options": "DENY"},
    )


def console_exception_handlers() -> dict[type[Exception], Callable[..., Any]]:
    """The app's handlers for `SignInNeeded` (303 to the login page) and `NotAllowed` (403)."""

    async def sign_in(request: Request, error: Exception) -> Response:
        assert isinstance(error, SignInNeeded)  # noqa: S101 - registered for this type only
        target = "/console/login"
        if request.method == "GET" and error.next_path != "/console":
            target += "?next=" + quote(error.next_path, safe="/")
        response = RedirectResponse(target, status.HTTP_303_SEE_OTHER)
        response.delete_cookie(COOKIE, path="/console")
        return response

    async def refused(request: Request, error: Exception) -> Response:
        assert isinstance(error, NotAllowed)  # noqa: S101 - registered for this type only
        return console_page(
            request, _templates, "console_refused.html.j2", None, 403, message=error.message
        )

    return {SignInNeeded: sign_in, NotAllowed: refused}


def _here(request: Request) -> str:
    path = request.url.path
    if request.url.query:
        path += "?" + request.url.query
    return path if _NEXT.fullmatch(path) else "/console"


def _secret(request: Request) -> bytes:
    value: str = request.app.state.runtime.settings.secret_key.get_secret_value()
    return value.encode()


def _safe_next(value: object) -> str:
    if isinstance(value, str) and _NEXT.fullmatch(value) and "//" not in value:
        return value
    return "/console"


# --- Login -----------------------------------------------------------------------------------


@pages.get("/login", response_class=HTMLResponse)
def login_page(request: Request) -> HTMLResponse:
    """The login form: username, password, and the code of the authenticator app."""
    return console_page(
        request,
        _templates,
        "console_login.html.j2",
        None,
        next=_safe_next(request.query_params.get("next")),
        error=None,
    )


@pages.post("/login", response_model=None)
async def log_in(request: Request, directory: DirectoryDep) -> Response:
    """Open a session (303 to where the staff member was going), or the form again with one
    answer for every failure. A form of another site is refused."""
    if not form_post_allowed(request.app.state.runtime.settings.public_url, request.headers):
        raise NotAllowed("A form of another site may not post to the console.")
    form = await request.form(max_fields=MAX_FORM_FIELDS)
    username, password, code = form.get("username"), form.get("password"), form.get("code")
    next_path = _safe_next(form.get("next"))
    token = None
    if (
        isinstance(username, str)
        and isinstance(password, str)
        and isinstance(code, str)
        and len(username) <= 40
        and len(password) <= 256
        and len(code) <= 10
    ):
        token = await run_in_threadpool(directory.log_in, username.strip(), password, code)
    if token is None:
        return console_page(
            request,
            _templates,
            "console_login.html.j2",
            None,
            401,
            next=next_path,
            error="That did not work: check the username, the password and the code. After "
            "5 failed tries in a row an account is locked for 15 minutes.",
        )
    response = RedirectResponse(next_path, status.HTTP_303_SEE_OTHER)
    response.set_cookie(
        COOKIE,
        token,
        max_age=int(SESSION_MAX.total_seconds()),
        path="/console",
        httponly=True,
        samesite="strict",
        secure=request.app.state.runtime.settings.public_url.startswith("https://"),
    )
    return response


@pages.post("/logout", response_model=None)
def log_out(
    request: Request, directory: DirectoryDep, _staff: Annotated[Staff, Depends(require(None))]
) -> Response:
    """End the session and forget its cookie."""
    token = request.cookies.get(COOKIE)
    if token:
        directory.log_out(token)
    response = RedirectResponse("/console/login", status.HTTP_303_SEE_OTHER)
    response.delete_cookie(COOKIE, path="/console")
    return response


@pages.get("", response_class=HTMLResponse)
def home(request: Request, staff: Annotated[Staff, Depends(require(None))]) -> HTMLResponse:
    """What the staff member's role lets them do."""
    return console_page(request, _templates, "console_home.html.j2", staff)


# --- Audit log -------------------------------------------------------------------------------

AUDIT_PAGE = 100


@pages.get("/audit", response_class=HTMLResponse)
def audit_log(
    request: Request,
    staff: Annotated[Staff, Depends(require(Permission.READ_AUDIT))],
    before: int | None = None,
    action: str | None = None,
    subject: str | None = None,
) -> HTMLResponse:
    """The audit log, newest first, 100 entries a page; filter by action or subject ID. It
    holds identifiers and counts, never a personal value."""
    sessions = request.app.state.runtime.sessions
    entries = recent_entries(
        sessions,
        before=before,
        action=action[:50] if action else None,
        subject_id=subject[:36] if subject else None,
        limit=AUDIT_PAGE,
    )
    return console_page(
        request,
        _templates,
        "console_audit.html.j2",
        staff,
        entries=entries,
        action=action or "",
        subject=subject or "",
        older=entries[-1].seq if len(entries) == AUDIT_PAGE else None,
        verified=None,
    )


@pages.post("/audit/verify", response_class=HTMLResponse)
def audit_verify(
    request: Request, staff: Annotated[Staff, Depends(require(Permission.READ_AUDIT))]
) -> HTMLResponse:
    """Check the whole hash chain and show the result with the newest entries."""
    sessions = request.app.state.runtime.sessions
    count, broken = verify_chain(sessions)
    entries = recent_entries(sessions, limit=AUDIT_PAGE)
    return console_page(
        request,
        _templates,
        "console_audit.html.j2",
        staff,
        entries=entries,
        action="",
        subject="",
        older=entries[-1].seq if len(entries) == AUDIT_PAGE else None,
        verified={"count": count, "broken": None if broken is None else str(broken)},
    )


# --- Staff accounts --------------------------------------------------------------------------

ManagerDep = Annotated[Staff, Depends(require(Permission.MANAGE_STAFF))]


def _staff_page(
    request: Request,
    directory: StaffDirectory,
    staff: Staff,
    code: int = 200,
    *,
    error: str | None = None,
    enrolment: object = None,
) -> HTMLResponse:
    return console_page(
        request,
        _templates,
        "console_staff.html.j2",
        staff,
        code,
        members=directory.members(),
        roles=list(Role),
        error=error,
        enrolment=enrolment,
    )


@pages.get("/staff", response_class=HTMLResponse)
def staff_list(request: Request, directory: DirectoryDep, staff: ManagerDep) -> HTMLResponse:
    """Every account with its role and state, and the form to add one."""
    return _staff_page(request, directory, staff)


@pages.post("/staff", response_class=HTMLResponse)
def staff_add(
    request: Request, form: ConsoleForm, directory: DirectoryDep, staff: ManagerDep
) -> HTMLResponse:
    """Add an account (`username`, `role`, `password`); its TOTP secret is shown once."""
    username, role, password = form.get("username"), form.get("role"), form.get("password")
    if not (isinstance(username, str) and isinstance(password, str) and role in set(Role)):
        return _staff_page(request, directory, staff, 422, error="Fill in every field.")
    try:
        enrolment = directory.add(username.strip(), Role(str(role)), password, actor=staff.actor)
    except AccountRefused as refused:
        return _staff_page(request, directory, staff, 422, error=str(refused))
    return _staff_page(request, directory, staff, enrolment=enrolment)


@pages.post("/staff/{username}/role", response_class=HTMLResponse)
def staff_role(
    username: str, request: Request, form: ConsoleForm, directory: DirectoryDep, staff: ManagerDep
) -> HTMLResponse:
    """Give an account another role."""
    role = form.get("role")
    if role not in set(Role):
        return _staff_page(request, directory, staff, 422, error="Choose a role.")
    if username == staff.member.username:
        return _staff_page(
            request, directory, staff, 409, error="Another admin must change your own role."
        )
    try:
        directory.set_role(username, Role(str(role)), actor=staff.actor)
    except StaffNotFound:
        return _staff_page(request, directory, staff, 404, error="No such account.")
    return _staff_page(request, directory, staff)


@pages.post("/staff/{username}/disable", response_class=HTMLResponse)
def staff_disable(
    username: str, request: Request, directory: DirectoryDep, staff: ManagerDep
) -> HTMLResponse:
    """Close an account; its sessions end at once."""
    if username == staff.member.username:
        return _staff_page(
            request, directory, staff, 409, error="Another admin must disable your account."
        )
    try:
        directory.disable(username, actor=staff.actor)
    except StaffNotFound:
        return _staff_page(request, directory, staff, 404, error="No such account.")
    return _staff_page(request, directory, staff)


@pages.post("/staff/{username}/reset", response_class=HTMLResponse)
def staff_reset(
    username: str, request: Request, form: ConsoleForm, directory: DirectoryDep, staff: ManagerDep
) -> HTMLResponse:
    """Give an account a new password and a new TOTP secret (shown once)."""
    password = form.get("password")
    if not isinstance(password, str):
        return _staff_page(request, directory, staff, 422, error="Enter the new password.")
    try:
        enrolment = directory.reset(username, password, actor=staff.actor)
    except StaffNotFound:
        return _staff_page(request, directory, staff, 404, error="No such account.")
    except AccountRefused as refused:
        return _staff_page(request, directory, staff, 422, error=str(refused))
    return _staff_page(request, directory, staff, enrolment=enrolment)
