"""Sources: list, get (by name or ``id:``), create, update (``/api/v1/sources/...``)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from airflow_provider_cm.api import routes as api
from airflow_provider_cm.api.times import api_time, now_utc
from airflow_provider_cm.emulator.errors import conflict
from airflow_provider_cm.emulator.openapi import doc
from airflow_provider_cm.emulator.rules.checks import array, body_field, boolean, obj, string
from airflow_provider_cm.emulator.schemas import SOURCE, envelope, list_of
from airflow_provider_cm.emulator.state.records import Source
from airflow_provider_cm.emulator.state.store import Store, new_id
from airflow_provider_cm.emulator.wire import json_body, ok

#: Languages a source may declare (the connector's ``CreateSourceRequest``).
LANGUAGES = ("en", "de", "xlm")
RESOURCE_NAME = string(min_len=1, max_len=256, pattern=r"[A-Za-z0-9_-]+")
SOURCE_FIELDS_BY_NAME = {
    "title": string(max_len=128),
    "description": string(max_len=16384),
    "language": string(choices=LANGUAGES),
    "should_translate": boolean(),
    "bucket_id": string(),
    "sensitive_properties": array(string(), max_items=4096),
    "_kind": string(),
    "email_transform_tag": string(),
}
SOURCE_FIELDS = obj(SOURCE_FIELDS_BY_NAME)

#: What the update route takes (the official client's ``UpdateSource``): not ``language`` or ``_kind``.
UPDATABLE_FIELDS = (
    "title",
    "description",
    "should_translate",
    "bucket_id",
    "sensitive_properties",
    "email_transform_tag",
)
SOURCE_UPDATE = obj({name: SOURCE_FIELDS_BY_NAME[name] for name in UPDATABLE_FIELDS}, closed=True)
#: The bodies of the create and update routes (``{"source": {...}}``, as :func:`body_field` reads them).
CREATE_BODY = obj({"source": SOURCE_FIELDS}, required=("source",))
UPDATE_BODY = obj({"source": SOURCE_UPDATE}, required=("source",))
ONE = envelope(source=SOURCE)
MANY = envelope(sources=list_of(SOURCE))


def create_source(store: Store, project: str, name: str, body: dict[str, Any]) -> Source:
    """Create a source in an existing project; 409 if the name is taken."""
    RESOURCE_NAME(name, "source name")
    fields = dict(body_field(body, "source", SOURCE_FIELDS))
    store.require_project(project)
    if store.find_source(project, name) is not None:
        raise conflict(f"source '{project}/{name}' already exists")
    stamp = api_time(now_utc())
    return store.put_source(Source(new_id(), project, name, fields, stamp, stamp))


def update_source(store: Store, project: str, name: str, body: dict[str, Any]) -> Source:
    """Update a source's fields (those given); 400 for a field the update route does not take."""
    source = store.source(project, name)
    fields = body_field(body, "source", SOURCE_UPDATE)
    return store.update_source(source, fields, api_time(now_utc()))


def list_sources(store: Store, project: str | None) -> list[dict[str, Any]]:
    """All sources, or a project's."""
    return [s.to_api() for s in store.sources.values() if project is None or s.project == project]


def router(store: Store) -> APIRouter:
    """The source routes."""
    routes = APIRouter()

    @routes.get(api.LIST_SOURCES.url, **doc(MANY))
    async def all_sources() -> Response:
        return ok(sources=store.read(list_sources, None))

    @routes.get(api.LIST_PROJECT_SOURCES.url, **doc({"anyOf": [MANY, ONE]}, errors=(404,)))
    async def project_sources(project: str) -> Response:
        if project.startswith("id:"):
            return ok(source=store.read(lambda s: s.source(project).to_api()))
        return ok(sources=store.read(list_sources, project))

    @routes.get(api.GET_SOURCE.url, **doc(ONE, errors=(404,)))
    async def get_source(project: str, name: str) -> Response:
        return ok(source=store.read(lambda s: s.source(project, name).to_api()))

    @routes.put(api.CREATE_SOURCE.url, **doc(ONE, body=CREATE_BODY, errors=(400, 404, 409)))
    async def put_source(project: str, name: str, request: Request) -> Response:
        body = await json_body(request)
        return ok(source=await store.write(lambda s: create_source(s, project, name, body).to_api()))

    @routes.post(api.UPDATE_SOURCE.url, **doc(ONE, body=UPDATE_BODY, errors=(400, 404)))
    async def post_source(project: str, name: str, request: Request) -> Response:
        body = await json_body(request)
        return ok(source=await store.write(lambda s: update_source(s, project, name, body).to_api()))

    return routes
