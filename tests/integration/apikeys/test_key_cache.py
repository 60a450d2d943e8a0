"""The API-key cache: a key is read from the database about once a second per process, so a
revocation takes effect within that second, and nothing but a valid key is remembered."""

from __future__ import annotations

from pledge.apikeys import KEY_CACHE_SECONDS, KeyCache, create_api_key, revoke_api_key
from pledge.runtime import Runtime


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_revoked_key_keeps_working_at_most_until_its_check_expires(runtime: Runtime) -> None:
    clock = Clock()
    keys = KeyCache(runtime.sessions, clock=clock)
    info, token = create_api_key(runtime.sessions, name="crm", scopes=["decide"], created_by="t")
    assert keys.cached(token) is None  # never checked yet
    caller = keys.authenticate(token)
    assert caller is not None
    assert caller.key_id == info.id
    assert revoke_api_key(runtime.sessions, info.id, revoked_by="tests")
    clock.now += KEY_CACHE_SECONDS * 0.9
    assert keys.cached(token) == caller  # the revocation is not seen yet, within the TTL
    clock.now += KEY_CACHE_SECONDS * 0.2
    assert keys.cached(token) is None  # past the TTL: checked against the database again
    assert keys.authenticate(token) is None


def test_only_valid_keys_are_remembered(runtime: Runtime) -> None:
    keys = KeyCache(runtime.sessions, clock=Clock())
    _, token = create_api_key(runtime.sessions, name="crm", scopes=["decide"], created_by="t")
    wrong_secret = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    for bad in (wrong_secret, "pledge_unknownprefi_" + "x" * 43, "not a token"):
        assert keys.authenticate(bad) is None
        assert keys.cached(bad) is None
    assert keys.cached(token) is None
