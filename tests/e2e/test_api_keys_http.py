"""API keys over HTTP: a key is checked against the database about once a second per process,
so a revoked key is refused within a second (docs/api.md, docs/operations.md)."""

from __future__ import annotations

from fastapi.testclient import TestClient

from pledge.apikeys import KEY_CACHE_SECONDS, KeyCache, create_api_key, revoke_api_key
from pledge.app import create_app
from pledge.runtime import Runtime


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_revoked_key_is_refused_once_its_last_check_is_a_second_old(runtime: Runtime) -> None:
    clock = Clock()
    app = create_app(runtime.settings, runtime)
    app.state.api_keys = KeyCache(runtime.sessions, clock=clock)
    info, token = create_api_key(
        runtime.sessions, name="site", scopes=["policy:read"], created_by="t"
    )
    headers = {"Authorization": f"Bearer {token}"}
    with TestClient(app) as client:
        assert client.get("/v1/policy", headers=headers).status_code == 200
        revoke_api_key(runtime.sessions, info.id, revoked_by="tests")
        clock.now += KEY_CACHE_SECONDS / 2
        assert client.get("/v1/policy", headers=headers).status_code == 200  # checked 0.5 s ago
        clock.now += KEY_CACHE_SECONDS / 2
        refused = client.get("/v1/policy", headers=headers)
        assert refused.status_code == 401
        assert refused.headers["WWW-Authenticate"] == "Bearer"
