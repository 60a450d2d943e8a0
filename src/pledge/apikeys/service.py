"""API-key use cases: create, authenticate, list and revoke."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import secrets
import string
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from pledge.apikeys.rules import TOKEN_PATTERN, scope_problem
from pledge.apikeys.tables import ApiKey
from pledge.audit import record

_PREFIX_ALPHABET = string.ascii_lowercase + string.digits


class InvalidScopes(ValueError):
    """One or more requested scopes do not exist."""


@dataclass(frozen=True)
class Caller:
    """An authenticated API key, as handlers see it."""

    key_id: int
    name: str
    scopes: frozenset[str]

    @property
    def actor(self) -> str:
        """How the audit log names this caller."""
        return f"apikey:{self.key_id}:{self.name}"


@dataclass(frozen=True)
class ApiKeyInfo:
    """A stored key without its secret."""

    id: int
    name: str
    prefix: str
    scopes: tuple[str, ...]
    created_at: dt.datetime
    created_by: str
    revoked: bool


def create_api_key(
    sessions: sessionmaker[Session], *, name: str, scopes: Sequence[str], created_by: str
) -> tuple[ApiKeyInfo, str]:
    """Store a new key and return it with its token, which is shown this once and never again."""
    problems = [p for p in (scope_problem(s) for s in scopes) if p]
    if problems or not scopes:
        raise InvalidScopes("; ".join(problems) or "a key needs at least one scope")
    prefix = "".join(secrets.choice(_PREFIX_ALPHABET) for _ in range(12))
    secret = secrets.token_urlsafe(32)
    with sessions() as session, session.begin():
        row = ApiKey(
            name=name,
            prefix=prefix,
            secret_sha256=_digest(secret),
            scopes=" ".join(sorted(set(scopes))),
            created_at=dt.datetime.now(dt.UTC),
            created_by=created_by,
            revoked_at=None,
        )
        session.add(row)
        session.flush()
        record(
            session,
            actor=created_by,
            action="apikey.create",
            details={"key_id": row.id, "name": name, "scopes": sorted(set(scopes))},
        )
        info = _info(row)
    return info, f"pledge_{prefix}_{secret}"


def authenticate(sessions: sessionmaker[Session], token: str) -> Caller | None:
    """The caller a presented token belongs to, or None if it is unknown, wrong or revoked."""
    match = TOKEN_PATTERN.fullmatch(token)
    if match is None:
        return None
    prefix, secret = match.groups()
    with sessions() as session:
        row = session.scalars(select(ApiKey).where(ApiKey.prefix == prefix)).first()
    if row is None or row.revoked_at is not None:
        return None
    if not hmac.compare_digest(row.secret_sha256, _digest(secret)):
        return None
    return Caller(key_id=row.id, name=row.name, scopes=frozenset(row.scopes.split()))


KEY_CACHE_SECONDS = 1.0
"""How long a server process trusts a key it has checked: a revocation takes effect in every
process within this time (docs/operations.md)."""


class KeyCache:
    """`authenticate` remembered for a short time per token, so that a busy API checks each key
    against the database about once a second instead of on every call.

    Only valid keys are remembered, under a digest of the token, never the token itself; a
    revoked key keeps working in this process for at most `ttl` seconds.
    """

    def __init__(
        self,
        sessions: sessionmaker[Session],
        *,
        ttl: float = KEY_CACHE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = 10_000,
    ) -> None:
        self.sessions = sessions
        self.ttl = ttl
        self.clock = clock
        self.max_keys = max_keys
        self._known: dict[bytes, tuple[Caller, float]] = {}

    def cached(self, token: str) -> Caller | None:
        """The caller remembered for `token` if it was checked less than `ttl` seconds ago."""
        held = self._known.get(hashlib.sha256(token.encode()).digest())
        if held is None or held[1] <= self.clock():
            return None
        return held[0]

    def authenticate(self, token: str) -> Caller | None:
        """`authenticate` against the database, remembering a valid key for `ttl` seconds."""
        checked_at = self.clock()  # the window starts before the read, so it never exceeds ttl
        caller = authenticate(self.sessions, token)
        if caller is not None:
            if len(self._known) >= self.max_keys:
                self._known.clear()  # a bound, not an eviction policy: deployments hold few keys
            digest = hashlib.sha256(token.encode()).digest()
            self._known[digest] = (caller, checked_at + self.ttl)
        return caller


def list_api_keys(sessions: sessionmaker[Session]) -> list[ApiKeyInfo]:
    """Every key, newest first, without secrets."""
    with sessions() as session:
        return [_info(row) for row in session.scalars(select(ApiKey).order_by(ApiKey.id.desc()))]


def revoke_api_key(sessions: sessionmaker[Session], key_id: int, *, revoked_by: str) -> bool:
    """Revoke a key at once; false if there is no such active key."""
    with sessions() as session, session.begin():
        row = session.get(ApiKey, key_id)
        if row is None or row.revoked_at is not None:
            return False
        row.revoked_at = dt.datetime.now(dt.UTC)
        record(session, actor=revoked_by, action="apikey.revoke", details={"key_id": key_id})
        return True


def _digest(secret: str) -> str:
    # The secret is 256 random bits, so a plain SHA-256 is as strong as a slow hash here.
    return hashlib.sha256(secret.encode()).hexdigest()


def _info(row: ApiKey) -> ApiKeyInfo:
    return ApiKeyInfo(
        id=row.id,
        name=row.name,
        prefix=row.prefix,
        scopes=tuple(row.scopes.split()),
        created_at=row.created_at,
        created_by=row.created_by,
        revoked=row.revoked_at is not None,
    )
