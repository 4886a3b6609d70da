"""Streams: create or replace, get, list, delete, and exceptions (``.../streams[/<name>]``).

A stream is a cursor over a dataset's comments in upload order, with a comment filter and,
optionally, a pinned model whose predictions results carry (``model.label_thresholds`` keeps only
labels at or above their threshold; without thresholds every label is attached and the API shows
``label_thresholds: []``). A new stream starts at its creation time. The API called streams
``triggers`` before the rename; every route is also served under ``.../triggers`` with
``trigger`` / ``triggers`` as the body and response keys, as the vendor's Power Automate connector
uses them (its update is ``POST .../triggers/<name>``).
"""

from __future__ import annotations

import re
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from airflow_provider_cm.api import routes as api
from airflow_provider_cm.api.times import api_time, now_utc, time_key
from airflow_provider_cm.emulator.errors import bad_request, not_found
from airflow_provider_cm.emulator.openapi import doc, query_list
from airflow_provider_cm.emulator.routes.model_versions import resolve_version
from airflow_provider_cm.emulator.routes.predictions import LABEL_THRESHOLDS
from airflow_provider_cm.emulator.rules.checks import array, integer, obj, string
from airflow_provider_cm.emulator.rules.stream_filters import COMMENT_FILTER
from airflow_provider_cm.emulator.schemas import STREAM, envelope, list_of
from airflow_provider_cm.emulator.state.records import Dataset, Stream
from airflow_provider_cm.emulator.state.store import Store
from airflow_provider_cm.emulator.wire import json_body, ok

STREAM_NAME = r"[A-Za-z0-9_-]{1,256}"
STREAM_NAME_PATTERN = re.compile(STREAM_NAME)
STREAM_FIELDS_BY_NAME = {
    "name": string(pattern=STREAM_NAME),
    "title": string(max_len=128),
    "description": string(max_len=16384),
    "comment_filter": COMMENT_FILTER,
    "model": obj({"version": integer(minimum=0), "label_thresholds": LABEL_THRESHOLDS}, required=("version",)),
}
STREAM_FIELDS = obj(STREAM_FIELDS_BY_NAME, required=("name",))
#: On the item's update route the name may come from the path instead.
STREAM_UPDATE_FIELDS = obj(STREAM_FIELDS_BY_NAME)
EXCEPTIONS_BODY = obj(
    {
        "exceptions": array(
            obj(
                {"uid": string(min_len=1), "metadata": obj({"type": string(min_len=1)}, required=("type",))},
                required=("uid", "metadata"),
            ),
            min_items=1,
        )
    },
    required=("exceptions",),
)
#: The two names of the resource: the current one and the one before the rename.
NOUNS = (("streams", "stream"), ("triggers", "trigger"))


def stream_url(name: str, plural: str) -> str:
    """The router path of the stream route ``name`` of :mod:`airflow_provider_cm.api.routes`, under
    ``streams`` or its former name ``triggers``."""
    return api.ROUTES[name if plural == "streams" else f"LEGACY_{name}"].url


def find_stream(dataset: Dataset, name: str) -> Stream:
    """A dataset's stream by name; 404 if there is none."""
    stream = dataset.streams.get(name)
    if stream is None:
        raise not_found()
    return stream


def _definition(body: dict[str, Any], noun: str, name: str | None) -> dict[str, Any]:
    fields = body.get(noun, body.get("stream"))
    if not isinstance(fields, dict):
        raise bad_request(f"body must be {{'{noun}': {{...}}}}")
    if name is not None:
        fields = {**fields, "name": fields.get("name") or name}
    if not isinstance(fields.get("name"), str) or not STREAM_NAME_PATTERN.fullmatch(fields["name"]):
        raise bad_request(f"{noun} name must match [A-Za-z0-9-_]{{1,256}}")
    STREAM_FIELDS(fields, noun)
    return fields


def list_form(label_thresholds: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Checked label thresholds as the API answers them: list-form names, a threshold for each."""
    return [
        {
            "name": item["name"] if isinstance(item["name"], list) else item["name"].split(" > "),
            "threshold": item.get("threshold") or 0.0,
        }
        for item in label_thresholds
    ]


def put_stream(
    store: Store, dataset: Dataset, body: dict[str, Any], noun: str = "stream", name: str | None = None
) -> Stream:
    """Create a stream, or replace the definition of the one with the same name (its cursor stays)."""
    fields = _definition(body, noun, name)
    model = fields.get("model")
    if model is not None:
        resolve_version(dataset, model["version"])
        model = {"version": model["version"], "label_thresholds": list_form(model.get("label_thresholds") or [])}
    stamp = api_time(now_utc())
    existing = dataset.streams.get(fields["name"])
    stream = Stream(
        id=existing.id if existing else f"{len(dataset.streams) + 1:016x}",
        dataset_id=dataset.id,
        name=fields["name"],
        title=fields.get("title") or "",
        description=fields.get("description") or "",
        created_at=existing.created_at if existing else stamp,
        updated_at=stamp,
        comment_filter=fields.get("comment_filter") or {},
        model=model,
        cursor=existing.cursor if existing else (time_key(now_utc()), "\uffff"),
        exceptions=existing.exceptions if existing else {},
    )
    return store.put_stream(dataset, stream)


def delete_stream(store: Store, dataset: Dataset, name: str) -> None:
    """Delete a stream and its cursor."""
    find_stream(dataset, name)
    store.delete_stream(dataset, name)


def tag_exceptions(store: Store, dataset: Dataset, name: str, body: dict[str, Any]) -> None:
    """Tag comments of the dataset as exceptions of the stream, each with a ``type``."""
    stream = find_stream(dataset, name)
    EXCEPTIONS_BODY(body, "body")
    for item in body["exceptions"]:
        store.comment_by_uid(dataset, item["uid"])
    store.tag_stream_exceptions(dataset, stream, {item["uid"]: dict(item["metadata"]) for item in body["exceptions"]})


def untag_exceptions(store: Store, dataset: Dataset, name: str, uids: list[str]) -> None:
    """Remove exception tags (unknown uids are ignored)."""
    store.untag_stream_exceptions(dataset, find_stream(dataset, name), uids)


def _register(routes: APIRouter, store: Store, plural: str, singular: str) -> None:
    one = envelope(**{singular: STREAM})
    create_body = obj({singular: STREAM_FIELDS}, required=(singular,))
    update_body = obj({singular: STREAM_UPDATE_FIELDS}, required=(singular,))
    uids = query_list("uid", array(string()), description="the uids of the comments to untag")

    @routes.put(stream_url("PUT_STREAM", plural), **doc(one, body=create_body, errors=(400, 404)))
    async def put_route(project: str, name: str, request: Request) -> Response:
        body = await json_body(request)
        stream = await store.write(lambda s: put_stream(s, s.dataset(project, name), body, singular).to_api())
        return ok(**{singular: stream})

    @routes.post(stream_url("UPDATE_STREAM", plural), **doc(one, body=update_body, errors=(400, 404)))
    async def update_route(project: str, name: str, stream: str, request: Request) -> Response:
        body = await json_body(request)
        updated = await store.write(lambda s: put_stream(s, s.dataset(project, name), body, singular, stream).to_api())
        return ok(**{singular: updated})

    @routes.get(stream_url("LIST_STREAMS", plural), **doc(envelope(**{plural: list_of(STREAM)}), errors=(404,)))
    async def list_route(project: str, name: str) -> Response:
        listed = store.read(lambda s: [x.to_api() for x in s.dataset(project, name).streams.values()])
        return ok(**{plural: listed})

    @routes.get(stream_url("GET_STREAM", plural), **doc(one, errors=(404,)))
    async def get_route(project: str, name: str, stream: str) -> Response:
        return ok(**{singular: store.read(lambda s: find_stream(s.dataset(project, name), stream).to_api())})

    @routes.delete(stream_url("DELETE_STREAM", plural), **doc(envelope(), errors=(404,)))
    async def delete_route(project: str, name: str, stream: str) -> Response:
        await store.write(lambda s: delete_stream(s, s.dataset(project, name), stream))
        return ok()

    @routes.put(stream_url("TAG_EXCEPTIONS", plural), **doc(envelope(), body=EXCEPTIONS_BODY, errors=(400, 404)))
    async def tag_route(project: str, name: str, stream: str, request: Request) -> Response:
        body = await json_body(request)
        await store.write(lambda s: tag_exceptions(s, s.dataset(project, name), stream, body))
        return ok()

    @routes.delete(stream_url("UNTAG_EXCEPTIONS", plural), **doc(envelope(), errors=(404,), query=[uids]))
    async def untag_route(project: str, name: str, stream: str, request: Request) -> Response:
        uids = request.query_params.getlist("uid")
        await store.write(lambda s: untag_exceptions(s, s.dataset(project, name), stream, uids))
        return ok()


def router(store: Store) -> APIRouter:
    """The stream definition and exception routes, under both names."""
    routes = APIRouter()
    for plural, singular in NOUNS:
        _register(routes, store, plural, singular)
    return routes
