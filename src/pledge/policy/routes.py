"""HTTP routes of the policy package: the policy as JSON and as the human-readable page."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException
from fastapi.responses import HTMLResponse, PlainTextResponse
from pydantic import BaseModel

from pledge.apikeys import require_scope
from pledge.policy import service
from pledge.policy.loader import LoadedPolicy
from pledge.policy.rendering import render_policy
from pledge.runtime import Runtime, runtime_of

api = APIRouter(
    prefix="/v1/policy", tags=["policy"], dependencies=[Depends(require_scope("policy:read"))]
)
pages = APIRouter(tags=["privacy policy"])

RuntimeDep = Annotated[Runtime, Depends(runtime_of)]


class VersionOut(BaseModel):
    """A published policy version."""

    id: int
    version: str
    content_hash: str
    effective_date: dt.date
    material: bool
    published_at: dt.datetime


class CurrentPolicyOut(VersionOut):
    """The policy in force, with its whole content."""

    policy: dict[str, Any]


def _current(runtime: Runtime) -> tuple[service.PublishedVersion, LoadedPolicy]:
    found = service.current_version(runtime.sessions)
    if found is None:
        raise HTTPException(status_code=404, detail="no policy version is in force yet")
    return found


def _out(version: service.PublishedVersion) -> dict[str, Any]:
    return {
        "id": version.id,
        "version": version.version,
        "content_hash": version.content_hash,
        "effective_date": version.effective_date,
        "material": version.material,
        "published_at": version.published_at,
    }


@api.get("", response_model=CurrentPolicyOut, summary="The policy in force")
def get_current_policy(runtime: RuntimeDep) -> CurrentPolicyOut:
    """The latest published version whose effective date has come, with its full content."""
    version, loaded = _current(runtime)
    return CurrentPolicyOut(**_out(version), policy=loaded.document.model_dump(mode="json"))


@api.get("/versions", response_model=list[VersionOut], summary="Every published version")
def get_policy_versions(runtime: RuntimeDep) -> list[VersionOut]:
    """All published versions, newest first (including ones not yet in force)."""
    return [VersionOut(**_out(v)) for v in service.list_versions(runtime.sessions)]


@pages.get("/privacy", response_class=HTMLResponse, summary="The privacy policy (HTML)")
def privacy_page(runtime: RuntimeDep) -> HTMLResponse:
    """The human-readable privacy policy generated from the version in force."""
    _, loaded = _current(runtime)
    html = render_policy(loaded.document, "html", public_url=runtime.settings.public_url)
    return HTMLResponse(html)


@pages.get("/privacy.md", response_class=PlainTextResponse, summary="The privacy policy (Markdown)")
def privacy_markdown(runtime: RuntimeDep) -> PlainTextResponse:
    """The same policy as Markdown."""
    _, loaded = _current(runtime)
    text = render_policy(loaded.document, "md", public_url=runtime.settings.public_url)
    return PlainTextResponse(text, media_type="text/markdown; charset=utf-8")
