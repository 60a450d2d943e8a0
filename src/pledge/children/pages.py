"""Pages Pledge serves for sign-ups at the policy's collection points, with the neutral age
screen in front of those that ask for it, and the page where a parent answers.

The age screen asks for a date of birth, typed freely, and says nothing of where the line is.
A date under the minimum age gets the same neutral answer as any refusal; the browser gets a
signed cookie that keeps it refused for the policy's `retry_block`, whatever date comes next.
Nothing typed at the screen is stored, audited or logged."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Request, status
from fastapi.responses import HTMLResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData, UploadFile

from pledge.children.consents import (
    EVIDENCE_MAX_BYTES,
    ConsentNotFound,
    ConsentRefusedHere,
    ParentalConsents,
    TooManyAsks,
)
from pledge.children.rules import RETRY_COOKIE, Screened, retry_blocked
from pledge.children.service import AgeScreen, DateUnreadable
from pledge.consent import Action, ChoiceToRecord, ConsentLedger, ConsentRefused, Method
from pledge.mail.rules import notice_sha256
from pledge.policy.document import LegalBasis, ParentalConsentMethod, PolicyDocument
from pledge.vault import (
    ChildRefused,
    CollectionRefused,
    IdentityKind,
    Source,
    Submission,
    Vault,
)
from pledge.vault.rules import IdentityInvalid, normalize_identity
from pledge.web import form_post_allowed, page_templates

pages = APIRouter(tags=["children"], include_in_schema=False)
_templates = page_templates("pledge.children")

REFUSAL = "Sorry, we can't sign you up right now. Thank you for your interest."
"""The same words for every refusal: they say nothing of age, nor of why."""


def _services(request: Request) -> tuple[AgeScreen, ParentalConsents, Vault, ConsentLedger]:
    state = request.app.state
    return state.age_screen, state.parental_consents, state.vault, state.consent


def same_origin(request: Request) -> None:
    """A form of another site may not post here (`403`, nothing read or changed)."""
    if not form_post_allowed(request.app.state.runtime.settings.public_url, request.headers):
        raise HTTPException(status.HTTP_403_FORBIDDEN, detail="a form of another site")


SameOrigin = [Depends(same_origin)]


async def sign_up_form(request: Request) -> FormData:
    """A sign-up form: the point's fields and a few more."""
    return await request.form(max_fields=120)


SignUpForm = Annotated[FormData, Depends(sign_up_form)]


def _render(request: Request, template: str, code: int = 200, **values: object) -> HTMLResponse:
    document = request.app.state.consent.policy_in_force().document
    organization = document.organization
    html = _templates.get_template(template).render(
        organization_name=organization.trade_name or organization.legal_name, **values
    )
    return HTMLResponse(html, status_code=code, headers={"Cache-Control": "no-store"})


def _document(request: Request) -> PolicyDocument:
    document: PolicyDocument = request.app.state.consent.policy_in_force().document
    return document


def _point_or_404(request: Request, point: str) -> HTMLResponse | None:
    found = _document(request).collection_points.get(point)
    if found is None or found.channel.value not in {"web_form", "social_login"}:
        return _render(request, "signup_missing.html.j2", 404)
    return None


def _refused(request: Request, token: str | None, until: dt.datetime | None) -> HTMLResponse:
    response = _render(request, "signup_refused.html.j2", message=REFUSAL)
    if token is not None:
        _set_retry_cookie(request, response, token, until)
    return response


def _set_retry_cookie(
    request: Request, response: Response, token: str, until: dt.datetime | None
) -> None:
    seconds = int((until - dt.datetime.now(dt.UTC)).total_seconds()) if until else None
    response.set_cookie(
        RETRY_COOKIE,
        token,
        max_age=seconds,
        path="/sign-up",
        httponly=True,
        samesite="lax",
        secure=request.app.state.runtime.settings.public_url.startswith("https://"),
    )


def _fields_page(
    request: Request,
    point: str,
    *,
    age_pass: str = "",
    parental_pass: str = "",
    consent_id: str = "",
    born: str = "",
    error: str | None = None,
    code: int = 200,
) -> HTMLResponse:
    document = _document(request)
    spec = document.collection_points[point]
    fields = [
        {
            "name": name,
            "label": document.category_name(field.category),
            "type": _input_type(field.category),
            "required": field.required,
            "value": born if field.category == "user.demographic.date_of_birth" else "",
        }
        for name, field in spec.fields.items()
    ]
    choices = (
        []
        if parental_pass
        else [
            {
                "purpose": key,
                "label": document.purpose_name(key),
                "text": _choice_text(document, key),
            }
            for key in _consent_purposes(document, point)
        ]
    )
    return _render(
        request,
        "signup_form.html.j2",
        code,
        point=point,
        point_name=spec.name or point,
        fields=fields,
        choices=choices,
        age_pass=age_pass,
        parental_pass=parental_pass,
        consent_id=consent_id,
        error=error,
    )


def _consent_purposes(document: PolicyDocument, point: str) -> list[str]:
    """The purposes stated at a point that need the person's own opt-in."""
    stated = {
        p for field in document.collection_points[point].fields.values() for p in field.purposes
    }
    return sorted(p for p in stated if document.purposes[p].legal_basis is LegalBasis.CONSENT)


def _choice_text(document: PolicyDocument, purpose: str) -> str:
    spec = document.purposes[purpose]
    return (
        f"{document.purpose_name(purpose)}: {spec.description}"
        if spec.description
        else (document.purpose_name(purpose))
    )


def _input_type(category: str) -> str:
    if category == "user.contact.email":
        return "email"
    if category == "user.authorization.password":
        return "password"
    if category == "user.contact.phone_number":
        return "tel"
    return "text"


@pages.get("/sign-up/{point}", response_class=HTMLResponse)
def sign_up(request: Request, point: str, consent: str = "", child: str = "") -> HTMLResponse:
    """The sign-up at a collection point: the age screen first where the policy asks for it
    (a refused browser sees the refusal again); with the link a parent handed over once they
    consented (`consent`, `child`), the child's own sign-up."""
    missing = _point_or_404(request, point)
    if missing is not None:
        return missing
    screen, consents, _, _ = _services(request)
    if consent and child:
        try:
            parental = consents.account_pass(consent[:36], child[:64])
        except (ConsentNotFound, ConsentRefusedHere):
            return _render(request, "signup_missing.html.j2", 404)
        return _fields_page(request, point, parental_pass=parental, consent_id=consent[:36])
    return _first_step(request, point, screen)


def _first_step(request: Request, point: str, screen: AgeScreen) -> HTMLResponse:
    """The form, the age screen, or, for a browser refused before, the same answer as then."""
    document = _document(request)
    if not document.collection_points[point].age_screen:
        return _fields_page(request, point, age_pass="")
    if not retry_blocked(screen.secret, request.cookies.get(RETRY_COOKIE), dt.datetime.now(dt.UTC)):
        return _render(request, "signup_age.html.j2", point=point, error=None)
    if document.children.child_accounts == "with_parental_consent":
        return _render(request, "signup_parent.html.j2", point=point, error=None)
    return _refused(request, None, None)


@pages.post("/sign-up/{point}/age", response_class=HTMLResponse, dependencies=SameOrigin)
def sign_up_age(request: Request, point: str, form: SignUpForm) -> HTMLResponse:
    """The age screen's answer: the form, a parent's permission to ask for, or the refusal."""
    missing = _point_or_404(request, point)
    if missing is not None:
        return missing
    screen, _, _, _ = _services(request)
    typed = form.get("date_of_birth")
    if not isinstance(typed, str) or len(typed) > 40:
        return _render(request, "signup_age.html.j2", 422, point=point, error=_AGAIN)
    try:
        answer = screen.screen(
            _document(request), point, typed, retry_cookie=request.cookies.get(RETRY_COOKIE)
        )
    except DateUnreadable:
        return _render(request, "signup_age.html.j2", 422, point=point, error=_AGAIN)
    if answer.outcome is Screened.ADMITTED and answer.age_pass:
        return _fields_page(request, point, age_pass=answer.age_pass, born=typed.strip())
    if answer.outcome is Screened.PARENT_NEEDED:
        response = _render(request, "signup_parent.html.j2", point=point, error=None)
        if answer.retry_token:
            _set_retry_cookie(request, response, answer.retry_token, answer.retry_until)
        return response
    return _refused(request, answer.retry_token, answer.retry_until)


_AGAIN = "Please enter your date of birth, for example 2001-07-24 or 07/24/2001."


@pages.post("/sign-up/{point}/parent", response_class=HTMLResponse, dependencies=SameOrigin)
def sign_up_parent(request: Request, point: str, form: SignUpForm) -> HTMLResponse:
    """Ask a parent for consent: their address is all that is kept."""
    missing = _point_or_404(request, point)
    if missing is not None:
        return missing
    _, consents, _, _ = _services(request)
    # Only a browser the screen sent here may ask (it holds the retry cookie).
    if not retry_blocked(
        request.app.state.age_screen.secret,
        request.cookies.get(RETRY_COOKIE),
        dt.datetime.now(dt.UTC),
    ):
        return _render(request, "signup_age.html.j2", point=point, error=None)
    email = form.get("parent_email")
    try:
        normalize_identity(IdentityKind.EMAIL, email if isinstance(email, str) else "")
        consents.ask(point, str(email)[:320], actor="sign-up page")
    except TooManyAsks:
        pass  # the same answer: the parent was asked enough today
    except IdentityInvalid:
        return _render(
            request,
            "signup_parent.html.j2",
            422,
            point=point,
            error="Enter your parent's or guardian's e-mail address.",
        )
    return _render(request, "signup_parent_asked.html.j2")


@pages.post("/sign-up/{point}", response_class=HTMLResponse, dependencies=SameOrigin)
def sign_up_submit(request: Request, point: str, form: SignUpForm) -> HTMLResponse:
    """Collect the sign-up through the vault (the age screen's pass, or a parent's, travels
    with it), and record the opt-ins ticked."""
    missing = _point_or_404(request, point)
    if missing is not None:
        return missing
    screen, consents, vault, ledger = _services(request)
    document = _document(request)
    spec = document.collection_points[point]
    values = {
        name: value.strip()
        for name in spec.fields
        if isinstance(value := form.get(name), str) and value.strip()
    }
    age_pass = _text(form, "age_pass")
    parental = _text(form, "parental_pass")
    # The consent is the one the pass proves, never one the form names.
    consent_id = vault.parental_consent_of(parental, point) if parental else None
    blocked = retry_blocked(
        screen.secret, request.cookies.get(RETRY_COOKIE), dt.datetime.now(dt.UTC)
    )
    if spec.age_screen and blocked and consent_id is None:
        return _first_step(request, point, screen)
    try:
        (result,) = vault.collect(
            [
                Submission(
                    point,
                    values,
                    Source.WEB_FORM,
                    age_pass=age_pass or None,
                    parental_pass=parental or None,
                )
            ],
            actor="sign-up page",
        )
    except ChildRefused:
        token, until = screen.block(document, dt.datetime.now(dt.UTC))
        return _refused(request, token, until)
    except (CollectionRefused, IdentityInvalid) as refused:
        return _fields_page(
            request,
            point,
            age_pass=age_pass,
            parental_pass=parental,
            consent_id=consent_id or "",
            error=f"Please check the form: {refused}",
            code=422,
        )
    if consent_id is not None:
        try:
            consents.account_opened(consent_id, result.subject_id)
        except ConsentNotFound:
            return _refused(request, None, None)
    else:
        ticked = {p for p in _consent_purposes(document, point) if form.get(f"opt_in:{p}") == "yes"}
        _record_opt_ins(
            ledger,
            [
                ChoiceToRecord(
                    result.subject_id,
                    purpose,
                    Action.GRANT,
                    Method.FORM_CHECKBOX,
                    f"sign-up page ({point})",
                    notice_sha256=notice_sha256(_choice_text(document, purpose)),
                )
                for purpose in sorted(ticked)
            ],
        )
    return _render(request, "signup_done.html.j2")


def _record_opt_ins(ledger: ConsentLedger, choices: list[ChoiceToRecord]) -> None:
    """Record the boxes ticked; a person whose choices cannot be recorded now (a child found
    earlier, frozen) keeps none, and is told nothing more than that they signed up."""
    try:
        ledger.record(choices, actor="sign-up page")
    except ConsentRefused:
        return


def _text(form: FormData, name: str) -> str:
    value = form.get(name)
    return value[:200] if isinstance(value, str) else ""


# --- The parent's page ---------------------------------------------------------------------------


@pages.get("/parental-consent/{consent_id}", response_class=HTMLResponse)
def parent_page(request: Request, consent_id: str, token: str = "") -> HTMLResponse:
    """What the parent is asked, the methods the policy accepts, and where things stand."""
    return _parent_page(request, consent_id[:36], token[:64])


def _collected_names(document: PolicyDocument, point: str) -> list[str]:
    found = document.collection_points.get(point)
    if found is None:
        return []
    return sorted({document.category_name(f.category) for f in found.fields.values()})


def _parent_page(
    request: Request,
    consent_id: str,
    token: str,
    *,
    error: str | None = None,
    code: int = 200,
) -> HTMLResponse:
    _, consents, _, _ = _services(request)
    try:
        view = consents.view(consent_id, token)
    except ConsentNotFound:
        return _render(request, "signup_missing.html.j2", 404)
    document = _document(request)
    methods = [m.value for m in document.children.parental_consent_methods]
    settings = request.app.state.runtime.settings
    adapters = {
        method: url
        for method, url in (
            ("payment_card", settings.parental_payment_url),
            ("knowledge_based", settings.parental_kba_url),
        )
        if url and method in methods
    }
    return _render(
        request,
        "parent_consent.html.j2",
        code,
        view=view,
        token=token,
        methods=methods,
        adapters=adapters,
        collected=_collected_names(document, view.collection_point),
        sign_up_link=(
            consents.child_link(view.id, token)
            if view.status == "consented" and view.reason == "sign_up" and not view.child_subject_id
            else None
        ),
        error=error,
    )


@pages.post("/parental-consent/{consent_id}", response_class=HTMLResponse, dependencies=SameOrigin)
async def parent_answer(request: Request, consent_id: str) -> HTMLResponse:
    """The parent's answer: consent from this page ("e-mail plus"), a signed form or an ID to
    check, or a revocation."""
    form = await request.form(max_fields=10, max_part_size=EVIDENCE_MAX_BYTES + 1024)
    try:
        upload = form.get("evidence")
        content, media_type = b"", ""
        if isinstance(upload, UploadFile):
            content = await upload.read(EVIDENCE_MAX_BYTES + 1)
            media_type = upload.content_type or ""
        answer = _ParentAnswer(
            consent_id[:36],
            _text(form, "token")[:64],
            str(form.get("action") or ""),
            third_party=form.get("third_party") == "yes",
            content=content,
            media_type=media_type,
        )
    finally:
        await form.close()  # a large file waits in a temporary file: gone now
    return await run_in_threadpool(_answer, request, answer)


@dataclass(frozen=True)
class _ParentAnswer:
    consent_id: str
    token: str
    action: str
    third_party: bool
    content: bytes
    media_type: str


def _answer(request: Request, answer: _ParentAnswer) -> HTMLResponse:
    _, consents, _, _ = _services(request)
    try:
        _carry_out(consents, answer)
    except ConsentNotFound:
        return _render(request, "signup_missing.html.j2", 404)
    except ConsentRefusedHere as refused:
        return _parent_page(request, answer.consent_id, answer.token, error=str(refused), code=422)
    return _parent_page(request, answer.consent_id, answer.token)


def _carry_out(consents: ParentalConsents, answer: _ParentAnswer) -> None:
    if answer.action == "email_plus":
        consents.consent_by_email_plus(
            answer.consent_id, answer.token, third_party=answer.third_party
        )
    elif answer.action in {"signed_form", "government_id"}:
        if not answer.content:
            raise ConsentRefusedHere("choose the file to send")
        consents.submit_evidence(
            answer.consent_id,
            answer.token,
            method=ParentalConsentMethod(answer.action),
            content=answer.content,
            media_type=answer.media_type,
            third_party=answer.third_party,
        )
    elif answer.action == "revoke":
        consents.revoke_by_token(answer.consent_id, answer.token)
    else:
        raise ConsentRefusedHere("choose how to answer")
