"""JSON in and out of the batch endpoints, without FastAPI's work per item.

For a declared body FastAPI decodes the JSON into Python objects and validates those; for a
declared answer it validates the returned models again and encodes them. For a call of 1,000
items that work is counted in milliseconds per call. Here pydantic validates the body straight
from its bytes, with the same model and the same checks, and the answer is encoded once from
plain data. A route taking `JsonBody(Model)` answers bad input as a declared body would: 422,
each problem's `loc` starting with `"body"`, nothing changed.
"""

from __future__ import annotations

from typing import Any, Generic, TypeVar

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, TypeAdapter, ValidationError

M = TypeVar("M", bound=BaseModel)

_SCHEMAS = "#/components/schemas/{model}"


class JsonBody(Generic[M]):
    """FastAPI dependency: the request's body validated as `model` from its JSON bytes."""

    def __init__(self, model: type[M]) -> None:
        self.model = model

    async def __call__(self, request: Request) -> M:
        """The body as `model`, or the 422 FastAPI gives a declared body that fails: a body
        that is not JSON (by its Content-Type, or by its bytes) included."""
        media_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
        if media_type != "application/json" and not media_type.endswith("+json"):
            raise RequestValidationError(
                [
                    {
                        "type": "content_type",
                        "loc": ("body",),
                        "msg": "the body must be JSON, sent as Content-Type: application/json",
                        "input": {},
                    }
                ]
            )
        try:
            return self.model.model_validate_json(await request.body())
        except ValidationError as error:
            raise RequestValidationError(
                [_located(problem) for problem in error.errors(include_url=False)]
            ) from None


def _located(problem: Any) -> dict[str, Any]:
    """A problem as FastAPI reports one in a body: under `"body"`, and never echoing bytes
    that are not JSON (they may not even be text)."""
    located = {**problem, "loc": ("body", *problem["loc"])}
    if isinstance(located.get("input"), bytes | bytearray):
        located["input"] = {}
    return located


def documented_body(model: type[BaseModel]) -> dict[str, Any]:
    """`openapi_extra` describing a `JsonBody(model)` as the required JSON request body; the
    models nested in it are referenced under components/schemas, where `add_body_schemas`
    puts those no declared body or answer put there already."""
    schema = model.model_json_schema(ref_template=_SCHEMAS)
    _NESTED.update(schema.pop("$defs", {}))
    return {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": schema}},
        }
    }


_NESTED: dict[str, Any] = {}
"""The schemas of the models nested in documented bodies, by name."""


def add_body_schemas(app: FastAPI) -> None:
    """Have `app`'s OpenAPI document hold the schemas `documented_body` refers to."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = build()
            schemas = document.setdefault("components", {}).setdefault("schemas", {})
            for name, schema in _NESTED.items():
                schemas.setdefault(name, schema)
        return app.openapi_schema or build()

    app.openapi = openapi  # type: ignore[method-assign]  # FastAPI's documented way to extend it


def json_answer(content: Any, status_code: int = 200) -> Response:
    """`content` (plain dicts, lists, strings, numbers) encoded once, with no validation: the
    route builds it in the shape of the `response_model` its documentation declares."""
    return Response(
        _PLAIN.dump_json(content), status_code=status_code, media_type="application/json"
    )


_PLAIN = TypeAdapter[Any](Any)
