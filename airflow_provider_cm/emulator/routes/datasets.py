"""Datasets: list, get (by name or ``id:``), create, update, delete (``/api/v1/datasets/...``).

The dataset object carries every field the official client requires; entity definitions get the
``id`` and ``color`` the API assigns.
"""

from __future__ import annotations

import zlib
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from airflow_provider_cm.api import routes as api
from airflow_provider_cm.api.limits import MAX_DATASET_DEFS
from airflow_provider_cm.api.times import api_time, now_utc
from airflow_provider_cm.emulator.errors import bad_request, conflict
from airflow_provider_cm.emulator.openapi import doc
from airflow_provider_cm.emulator.routes.sources import RESOURCE_NAME
from airflow_provider_cm.emulator.rules.checks import array, body_field, boolean, obj, string
from airflow_provider_cm.emulator.schemas import DATASET, envelope, list_of
from airflow_provider_cm.emulator.state.records import Dataset
from airflow_provider_cm.emulator.state.store import Store, new_id
from airflow_provider_cm.emulator.wire import json_body, ok

MODEL_FAMILIES = (
    "english",
    "english-dev",
    "random",
    "german",
    "german-dev",
    "transformer-english",
    "transformer-xlm",
)
DATASET_FLAGS = ("gpt4", "external_moon_llm", "qos", "zero_shot_labels", "ixp")
ENTITY_DEF = obj(
    {
        "id": string(),
        "name": string(min_len=1),
        "title": string(max_len=64),
        "inherits_from": array(string(), max_items=1),
        "trainable": boolean(),
        "rules": obj({}),
    },
    required=("name",),
)
LABEL_DEF = obj(
    {"name": string(min_len=1), "title": string(max_len=128), "description": string(max_len=16384)},
    required=("name",),
)
LABEL_GROUP = obj(
    {"name": string(min_len=1, max_len=64), "label_defs": array(LABEL_DEF, max_items=MAX_DATASET_DEFS)},
    required=("name",),
)
DATASET_FIELDS_BY_NAME = {
    "title": string(max_len=128),
    "description": string(max_len=16384),
    "source_ids": array(string(), max_items=1024),
    "model_family": string(choices=MODEL_FAMILIES),
    "has_sentiment": boolean(),
    "entity_defs": array(ENTITY_DEF, max_items=MAX_DATASET_DEFS),
    "general_fields": array(obj({})),
    "label_defs": array(LABEL_DEF, max_items=MAX_DATASET_DEFS),
    "label_groups": array(LABEL_GROUP, max_items=MAX_DATASET_DEFS),
    "copy_annotations_from": string(),
    "_dataset_flags": array(string(choices=DATASET_FLAGS)),
    "_model_config": obj({}),
}
DATASET_FIELDS = obj(DATASET_FIELDS_BY_NAME)

#: What the update route takes (the official client's ``UpdateDataset``, API reference 3.6): the
#: sentiment, model family and label taxonomy are set at creation only.
UPDATABLE_FIELDS = ("source_ids", "title", "description", "_model_config", "entity_defs")
DATASET_UPDATE = obj({name: DATASET_FIELDS_BY_NAME[name] for name in UPDATABLE_FIELDS}, closed=True)
#: The bodies of the create and update routes (``{"dataset": {...}}``, as :func:`body_field` reads them).
CREATE_BODY = obj({"dataset": DATASET_FIELDS}, required=("dataset",))
UPDATE_BODY = obj({"dataset": DATASET_UPDATE}, required=("dataset",))
ONE = envelope(dataset=DATASET)
MANY = envelope(datasets=list_of(DATASET))


def _entity_defs(defs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Entity definitions as the API returns them: with an ``id`` and a ``color``."""
    return [
        {
            "id": d.get("id") or new_id(),
            "name": d["name"],
            "title": d.get("title") or d["name"],
            "inherits_from": list(d.get("inherits_from") or []),
            "trainable": bool(d.get("trainable", False)),
            "color": zlib.crc32(d["name"].encode()) % 0x1000000,
        }
        for d in defs
    ]


def _label_names(fields: dict[str, Any]) -> list[str]:
    names = [d["name"] for d in fields.get("label_defs") or []]
    for group in fields.get("label_groups") or []:
        names.extend(d["name"] for d in group.get("label_defs") or [])
    return list(dict.fromkeys(names))


def _check_source_ids(store: Store, source_ids: list[str]) -> list[str]:
    for source_id in source_ids:
        if source_id not in store.sources:
            raise bad_request(f"source id '{source_id}' does not exist")
    return list(dict.fromkeys(source_ids))


def _checked_fields(store: Store, fields: dict[str, Any]) -> dict[str, Any]:
    """The given fields as stored (400 for a source id that does not exist)."""
    fields = {k: v for k, v in fields.items() if v is not None}
    if "source_ids" in fields:
        fields["source_ids"] = _check_source_ids(store, fields["source_ids"])
    if "entity_defs" in fields:
        fields["entity_defs"] = _entity_defs(fields["entity_defs"])
    return fields


def _apply_fields(store: Store, dataset: Dataset, fields: dict[str, Any], updated_at: str | None = None) -> None:
    store.update_dataset(dataset, fields, updated_at)
    store.learn_label_names(dataset, _label_names(fields))


def create_dataset(store: Store, project: str, name: str, body: dict[str, Any]) -> Dataset:
    """Create a dataset over existing sources; 409 if the name is taken."""
    RESOURCE_NAME(name, "dataset name")
    fields = body_field(body, "dataset", DATASET_FIELDS)
    store.require_project(project)
    fields = _checked_fields(store, fields)
    if store.find_dataset(project, name) is not None:
        raise conflict(f"dataset '{project}/{name}' already exists")
    stamp = api_time(now_utc())
    dataset = store.put_dataset(Dataset(new_id(), project, name, {}, [], stamp, stamp))
    _apply_fields(store, dataset, fields)
    return dataset


def update_dataset(store: Store, project: str, name: str, body: dict[str, Any]) -> Dataset:
    """Update the fields given (e.g. ``source_ids``); 400 for a field the update route does not take."""
    dataset = store.dataset(project, name)
    fields = _checked_fields(store, body_field(body, "dataset", DATASET_UPDATE))
    _apply_fields(store, dataset, fields, api_time(now_utc()))
    return dataset


def delete_dataset(store: Store, project: str, name: str) -> None:
    """Delete a dataset with its annotations, models and streams; its sources stay."""
    store.delete_dataset(store.dataset(project, name))


def list_datasets(store: Store, project: str | None) -> list[dict[str, Any]]:
    """All datasets, or a project's."""
    return [d.to_api() for d in store.datasets.values() if project is None or d.project == project]


def router(store: Store) -> APIRouter:
    """The dataset routes."""
    routes = APIRouter()

    @routes.get(api.LIST_DATASETS.url, **doc(MANY))
    async def all_datasets() -> Response:
        return ok(datasets=store.read(list_datasets, None))

    @routes.get(api.LIST_PROJECT_DATASETS.url, **doc({"anyOf": [MANY, ONE]}, errors=(404,)))
    async def project_datasets(project: str) -> Response:
        if project.startswith("id:"):
            return ok(dataset=store.read(lambda s: s.dataset(project).to_api()))
        return ok(datasets=store.read(list_datasets, project))

    @routes.get(api.GET_DATASET.url, **doc(ONE, errors=(404,)))
    async def get_dataset(project: str, name: str) -> Response:
        return ok(dataset=store.read(lambda s: s.dataset(project, name).to_api()))

    @routes.put(api.CREATE_DATASET.url, **doc(ONE, body=CREATE_BODY, errors=(400, 404, 409)))
    async def put_dataset(project: str, name: str, request: Request) -> Response:
        body = await json_body(request)
        return ok(dataset=await store.write(lambda s: create_dataset(s, project, name, body).to_api()))

    @routes.post(api.UPDATE_DATASET.url, **doc(ONE, body=UPDATE_BODY, errors=(400, 404)))
    async def post_dataset(project: str, name: str, request: Request) -> Response:
        body = await json_body(request)
        return ok(dataset=await store.write(lambda s: update_dataset(s, project, name, body).to_api()))

    @routes.delete(api.DELETE_DATASET.url, **doc(envelope(), errors=(404,)))
    async def remove_dataset(project: str, name: str) -> Response:
        await store.write(delete_dataset, project, name)
        return ok()

    return routes
