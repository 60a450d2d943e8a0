"""The OpenAPI document: what integrating engineers generate their clients from."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from pledge.app import create_app
from pledge.runtime import Runtime


@pytest.fixture
def document(runtime: Runtime) -> Iterator[dict[str, Any]]:
    with TestClient(create_app(runtime.settings, runtime)) as client:
        yield client.get("/openapi.json").json()


def _references(node: object) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield value
            else:
                yield from _references(value)
    elif isinstance(node, list):
        for value in node:
            yield from _references(value)


def test_every_reference_in_the_document_resolves(document: dict[str, Any]) -> None:
    schemas = document["components"]["schemas"]
    references = set(_references(document))

    assert references
    unresolved = {r for r in references if r.removeprefix("#/components/schemas/") not in schemas}
    assert unresolved == set()


@pytest.mark.parametrize(
    ("path", "item"),
    [("/v1/decisions/batch", "DecisionIn"), ("/v1/consent/batch", "SubjectChoiceIn")],
)
def test_the_batch_endpoints_document_their_body_and_answer(
    document: dict[str, Any], path: str, item: str
) -> None:
    operation = document["paths"][path]["post"]
    body = operation["requestBody"]

    assert body["required"] is True
    schema = body["content"]["application/json"]["schema"]
    items = schema["properties"]["items"]
    assert items["items"] == {"$ref": f"#/components/schemas/{item}"}
    assert (items["minItems"], items["maxItems"]) == (1, 1000)
    answers = {code: answer["content"] for code, answer in operation["responses"].items()}
    assert "application/json" in answers.get("200", answers.get("201", {}))
