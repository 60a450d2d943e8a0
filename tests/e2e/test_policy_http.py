"""The policy over HTTP: JSON for integrating services, the generated page for people."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from pledge.app import DatabaseNotReady, create_app
from pledge.policy import PolicyInvalid, list_versions, load_policy_file
from pledge.runtime import Runtime
from tests.conftest import REFERENCE_POLICY, api_headers, test_settings


@pytest.fixture
def client(runtime: Runtime) -> Iterator[TestClient]:
    headers = api_headers(runtime, "policy:read")
    with TestClient(create_app(runtime.settings, runtime), headers=headers) as test_client:
        yield test_client


def test_the_policy_api_needs_a_key_with_its_scope(runtime: Runtime) -> None:
    with TestClient(create_app(runtime.settings, runtime)) as anonymous:
        assert anonymous.get("/v1/policy").status_code == 401
        assert anonymous.get("/privacy").status_code == 200
        collector = api_headers(runtime, "collect")
        refused = anonymous.get("/v1/policy/versions", headers=collector)
        assert refused.status_code == 403
        assert "policy:read" in refused.json()["detail"]


def test_the_first_start_publishes_the_configured_policy_and_serves_it(client: TestClient) -> None:
    response = client.get("/v1/policy")
    assert response.status_code == 200
    body = response.json()
    assert body["version"] == "2026.11"
    assert body["content_hash"] == load_policy_file(REFERENCE_POLICY).content_hash
    assert body["policy"]["organization"]["legal_name"] == "Aura Imaging, Inc."
    assert "user.contact.email" in body["policy"]["data_categories"]


def test_versions_are_listed_newest_first(client: TestClient) -> None:
    versions = client.get("/v1/policy/versions").json()
    assert [v["version"] for v in versions] == ["2026.11"]
    assert set(versions[0]) == {
        "id",
        "version",
        "content_hash",
        "effective_date",
        "material",
        "published_at",
    }


def test_the_privacy_page_is_the_policy_generated_from_the_file(client: TestClient) -> None:
    page = client.get("/privacy")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "Aura Imaging, Inc." in page.text
    assert "Your California Privacy Rights" in page.text
    markdown = client.get("/privacy.md")
    assert markdown.headers["content-type"].startswith("text/markdown")
    assert "Your California Privacy Rights" in markdown.text


def test_the_openapi_document_describes_the_policy_endpoints(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/v1/policy", "/v1/policy/versions", "/privacy"} <= set(paths)


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_the_api_docs_pages_load_nothing_from_other_sites(client: TestClient, page: str) -> None:
    html = client.get(page).text
    assert "openapi.json" in html
    external = [u for u in re.findall(r"""(?:src|href)=["']([^"']+)""", html) if "//" in u]
    assert external == []
    assert "fonts.googleapis" not in html


def test_the_access_log_holds_no_ip_address_and_no_query_string(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="pledge.access"):
        client.get(
            "/v1/policy?email=jane.doe@example.com", headers={"X-Forwarded-For": "203.0.113.9"}
        )
    lines = [r.getMessage() for r in caplog.records if r.name == "pledge.access"]
    assert lines == [lines[0]]
    assert lines[0].startswith("GET /v1/policy 200 ")
    assert "jane.doe" not in lines[0]
    assert "testclient" not in lines[0]
    assert "203.0.113.9" not in lines[0]


def test_the_server_refuses_to_start_on_an_invalid_policy(runtime: Runtime, tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text(
        REFERENCE_POLICY.read_text().replace("legal_basis: consent", "legal_basis: maybe")
    )
    settings = test_settings(str(runtime.engine.url), policy_file=broken)
    with pytest.raises(PolicyInvalid, match=r"broken\.yaml:\d+: purposes\.marketing"):
        create_app(settings, runtime)
    assert list_versions(runtime.sessions) == []


def test_the_server_refuses_to_start_on_an_unmigrated_database(empty_database_url: str) -> None:
    settings = test_settings(empty_database_url)
    runtime = Runtime.build(settings)
    with pytest.raises(DatabaseNotReady, match="pledge db upgrade"):
        create_app(settings, runtime)
    runtime.engine.dispose()


def test_a_later_start_with_another_file_does_not_replace_the_published_policy(
    runtime: Runtime, tmp_path: Path
) -> None:
    create_app(runtime.settings, runtime)
    other = tmp_path / "other.yaml"
    other.write_text(
        REFERENCE_POLICY.read_text().replace('version: "2026.11"', 'version: "2099.1"')
    )
    create_app(test_settings(str(runtime.engine.url), policy_file=other), runtime)
    assert [v.version for v in list_versions(runtime.sessions)] == ["2026.11"]


def test_the_health_check_reaches_the_database(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
