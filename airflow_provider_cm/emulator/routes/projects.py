"""Projects (private routes ``/api/_private/projects[/<name>]``): list, get, create (PUT), update (POST)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from airflow_provider_cm.api import routes as api
from airflow_provider_cm.api.times import api_time, now_utc
from airflow_provider_cm.emulator.errors import conflict, not_found
from airflow_provider_cm.emulator.openapi import doc
from airflow_provider_cm.emulator.rules.checks import array, body_field, obj, string
from airflow_provider_cm.emulator.schemas import PROJECT, envelope, list_of
from airflow_provider_cm.emulator.state.records import Project
from airflow_provider_cm.emulator.state.store import Store, new_id
from airflow_provider_cm.emulator.wire import json_body, ok

#: Project names the official client accepts.
PROJECT_NAME = string(min_len=1, max_len=1024, pattern=r"[A-Za-z0-9_.-]+")
PROJECT_BODY = obj(
    {
        "project": obj({"title": string(max_len=128), "description": string(max_len=16384)}),
        "user_ids": array(string()),
    }
)

PROJECT_UPDATE = obj({"title": string(max_len=128), "description": string(max_len=16384)}, closed=True)
#: What the update route's body holds (as :func:`update_project` reads it).
PROJECT_UPDATE_BODY = obj({"project": PROJECT_UPDATE}, required=("project",))
ANSWER = envelope(project=PROJECT)


def create_project(store: Store, name: str, body: dict[str, Any]) -> Project:
    """Create a project; 409 if the name is taken."""
    PROJECT_NAME(name, "project name")
    PROJECT_BODY(body, "body")
    if name in store.projects:
        raise conflict(f"project '{name}' already exists")
    fields = body.get("project") or {}
    stamp = api_time(now_utc())
    return store.put_project(
        Project(new_id(), name, fields.get("title") or "", fields.get("description") or "", stamp, stamp)
    )


def update_project(store: Store, name: str, body: dict[str, Any]) -> Project:
    """Update a project's ``title`` and ``description`` (those given); 404 if there is none.

    The body is ``{"project": {"title"?, "description"?}}``, as the official client's
    ``UpdateProjectRequest`` sends it; other fields are refused.
    """
    project = get_project(store, name)
    fields = body_field(body, "project", PROJECT_UPDATE)
    return store.update_project(project, fields.get("title"), fields.get("description"), api_time(now_utc()))


def get_project(store: Store, name: str) -> Project:
    """One project; 404 if there is none."""
    project = store.projects.get(name)
    if project is None:
        raise not_found()
    return project


def router(store: Store) -> APIRouter:
    """The project routes."""
    routes = APIRouter()

    @routes.get(api.LIST_PROJECTS.url, **doc(envelope(projects=list_of(PROJECT))))
    async def list_projects() -> Response:
        return ok(projects=store.read(lambda s: [p.to_api() for p in s.projects.values()]))

    @routes.get(api.GET_PROJECT.url, **doc(ANSWER, errors=(404,)))
    async def read_project(project: str) -> Response:
        return ok(project=store.read(lambda s: get_project(s, project).to_api()))

    @routes.put(api.CREATE_PROJECT.url, **doc(ANSWER, body=PROJECT_BODY, errors=(400, 409)))
    async def put_project(project: str, request: Request) -> Response:
        body = await json_body(request)
        return ok(project=await store.write(lambda s: create_project(s, project, body).to_api()))

    @routes.post(api.UPDATE_PROJECT.url, **doc(ANSWER, body=PROJECT_UPDATE_BODY, errors=(400, 404)))
    async def post_project(project: str, request: Request) -> Response:
        body = await json_body(request)
        return ok(project=await store.write(lambda s: update_project(s, project, body).to_api()))

    return routes
