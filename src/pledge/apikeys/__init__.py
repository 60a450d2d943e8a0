"""API keys for integrating services: hashed at rest, scoped, checked on every /v1 call."""

from pledge.apikeys.routes import authenticated, check_scope, require_scope
from pledge.apikeys.rules import FIXED_SCOPES, allows, scope_problem
from pledge.apikeys.service import (
    ApiKeyInfo,
    Caller,
    InvalidScopes,
    authenticate,
    create_api_key,
    list_api_keys,
    revoke_api_key,
)

__all__ = [
    "FIXED_SCOPES",
    "ApiKeyInfo",
    "Caller",
    "InvalidScopes",
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
