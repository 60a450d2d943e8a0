"""The HTTP side of API keys: dependencies that authenticate a call and check its scope."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool

from pledge.apikeys.rules import allows
from pledge.apikeys.service import Caller, KeyCache

_bearer = HTTPBearer(auto_error=False, description="An API key: `Authorization: Bearer pledge_...`")


def key_cache_of(request: Request) -> KeyCache:
    """The API keys the app serving `request` has checked lately."""
    keys: KeyCache = request.app.state.api_keys
    return keys


async def authenticated(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Caller:
    """Dependency: the caller of a request bearing a valid, unrevoked API key; else 401.

    A key checked in the last second is not read again (`KeyCache`); otherwise the database is
    read in a worker thread, so the event loop never waits on it.
    """
    caller = None
    if credentials is not None:
        keys = key_cache_of(request)
        caller = keys.cached(credentials.credentials)
        if caller is None:
            caller = await run_in_threadpool(keys.authenticate, credentials.credentials)
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


def require_scope(scope: str) -> Callable[..., Awaitable[Caller]]:
    """A dependency admitting only calls whose API key holds `scope`."""

    # Async (it does no I/O), so FastAPI calls it on the event loop, not in a worker thread.
    async def check(caller: Annotated[Caller, Depends(authenticated)]) -> Caller:
        check_scope(caller, scope)
        return caller

    return check
