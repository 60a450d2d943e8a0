"""API keys for integrating services: hashed at rest, scoped, checked on every /v1 call."""

from pledge.apikeys.routes import authenticated, check_scope, require_scope
from pledge.apikeys.rules import FIXED_SCOPES, allows, scope_problem
from pledge.apikeys.service import (
    KEY_CACHE_SECONDS,
    ApiKeyInfo,
    Caller,
    InvalidScopes,
    KeyCache,
    authenticate,
    create_api_key,
    list_api_keys,
    revoke_api_key,
)

__all__ = [
    "FIXED_SCOPES",
    "KEY_CACHE_SECONDS",
    "ApiKeyInfo",
    "Caller",
    "InvalidScopes",
    "KeyCache",
    "allows",
    "authenticate",
    "authenticated",
    "check_scope",
    "create_api_key",
    "list_api_keys",
    "require_scope",
    "revoke_api_key",
    "scope_problem",
]
