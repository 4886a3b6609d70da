"""The emulator's OpenAPI document: what every API route accepts and answers.

Routes read raw bodies (so that a malformed one gets the API's 400 envelope rather than
FastAPI's 422), so the document is written from the same rules instead: each route's decorator
takes :func:`doc`, which publishes the request body's :class:`~airflow_provider_cm.emulator.rules.checks.Check`
as its JSON Schema, the query parameters the route reads, its ``200`` envelope and the errors it
answers. :func:`install` adds the bearer-token security scheme and drops the ``422`` FastAPI
would otherwise list (the emulator never answers it). The document is served at
``/openapi.json`` (with the token); the ``/_emulator/...`` routes are not in it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from airflow_provider_cm.emulator.rules.checks import Check
from airflow_provider_cm.emulator.schemas import ERROR

JSON = "application/json"
#: The error envelope, defined once in the document's components.
ERROR_REF = {"$ref": "#/components/schemas/Error"}
REASONS = {
    400: "The request is malformed: its body, a query parameter or a name breaks the API's rules.",
    401: "The token is missing, unknown or expired.",
    404: "The resource named in the path does not exist.",
    409: "The request contradicts what is stored (the name is taken, the id holds other data).",
    429: "Too many requests: retry after the ``Retry-After`` header's seconds.",
}
#: Every API route answers these: the token check and the rate limit come before the route.
ALWAYS = (401, 429)
SECURITY_SCHEME = "bearerToken"


def _content(schema: dict[str, Any]) -> dict[str, Any]:
    return {JSON: {"schema": schema}}


def error_responses(codes: Iterable[int]) -> dict[int | str, dict[str, Any]]:
    """The error envelope under each status of ``codes``, plus 401 and 429."""
    responses: dict[int | str, dict[str, Any]] = {}
    for code in sorted({*codes, *ALWAYS}):
        responses[code] = {"description": REASONS[code], "content": _content(ERROR_REF)}
    responses[429]["headers"] = {"Retry-After": {"schema": {"type": "string"}}}
    return responses


def query_list(name: str, values: Check, *, required: bool = False, description: str = "") -> dict[str, Any]:
    """A query parameter given once or more (``?id=a&id=b``); ``values`` is the rule for the list."""
    return {"name": name, "in": "query", "required": required, "schema": values.schema, "description": description}


def query_value(name: str, item: Check, *, description: str = "") -> dict[str, Any]:
    """An optional query parameter given once."""
    return {"name": name, "in": "query", "required": False, "schema": item.schema, "description": description}


def doc(
    answer: dict[str, Any],
    *,
    body: Check | None = None,
    errors: Iterable[int] = (),
    query: Iterable[dict[str, Any]] = (),
) -> dict[str, Any]:
    """Keyword arguments for a route decorator: its responses, JSON body and query parameters.

    :param answer: the JSON Schema of the 200 response.
    :param body: the rule the route applies to its JSON body (an empty body counts as ``{}``).
    :param errors: the error statuses the route answers besides 401 and 429.
    :param query: query parameters the route reads (:func:`query_list`, :func:`query_value`).
    """
    responses: dict[int | str, dict[str, Any]] = {200: {"description": "OK", "content": _content(answer)}}
    responses.update(error_responses(errors))
    extra: dict[str, Any] = {}
    if body is not None:
        extra["requestBody"] = {"required": False, "content": _content(body.schema)}
    parameters = list(query)
    if parameters:
        extra["parameters"] = parameters
    return {"responses": responses, "openapi_extra": extra or None}


def _document(app: FastAPI) -> dict[str, Any]:
    document = get_openapi(title=app.title, version=app.version, description=__doc__, routes=app.routes)
    for item in document.get("paths", {}).values():
        for operation in item.values():
            operation.get("responses", {}).pop("422", None)
    components = document.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)
    schemas["Error"] = ERROR
    components["securitySchemes"] = {SECURITY_SCHEME: {"type": "http", "scheme": "bearer"}}
    document["security"] = [{SECURITY_SCHEME: []}]
    return document


def install(app: FastAPI) -> None:
    """Make ``app.openapi()`` return the emulator's document (built once, on first use)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = _document(app)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
