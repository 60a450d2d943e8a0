"""The HTTP side of API keys: dependencies that authenticate a call and check its scope."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, HTTPException, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from pledge.apikeys.rules import allows
from pledge.apikeys.service import Caller, authenticate
from pledge.runtime import Runtime, runtime_of

_bearer = HTTPBearer(auto_error=False, description="An API key: `Authorization: Bearer pledge_...`")


def authenticated(
    runtime: Annotated[Runtime, Depends(runtime_of)],
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Caller:
    """Dependency: the caller of a request bearing a valid, unrevoked API key; else 401."""
    caller = authenticate(runtime.sessions, credentials.credentials) if credentials else None
    if caller is None:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            detail="a valid API key is required (Authorization: Bearer pledge_...)",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return caller


def check_scope(caller: Caller, scope: str) -> None:
    """Raise 403 unless `caller` holds `scope`."""
    if not allows(caller.scopes, scope):
        raise HTTPException(
            status.HTTP_403_FORBIDDEN, detail=f"this API key lacks the scope '{scope}'"
        )


def require_scope(scope: str) -> Callable[..., Caller]:
    """A dependency admitting only calls whose API key holds `scope`."""

    def check(caller: Annotated[Caller, Depends(authenticated)]) -> Caller:
        check_scope(caller, scope)
        return caller

    return check
