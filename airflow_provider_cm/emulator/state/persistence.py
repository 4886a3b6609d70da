"""The stored form of a tenant: the JSON snapshot and the journal records that update it.

A journal record holds the current value of every object one write changed (``puts``), keyed as
``[kind, *key, value]`` with ``null`` for a deleted object, and the billing counters when the
write changed them (``billing``). Each value is absolute, so replaying a record twice, or onto a
snapshot that already holds it, changes nothing.
"""

from __future__ import annotations

import json
import os
import tempfile
from typing import Any

from airflow_provider_cm.emulator.state.records import (
    Annotation,
    Comment,
    Dataset,
    ModelVersion,
    Project,
    Source,
    Stream,
)
from airflow_provider_cm.emulator.state.tenant import Tenant

BILLING = ("billed_comments", "billed_predictions", "billed_by_source")


def current_value(store: Tenant, key: tuple[Any, ...]) -> Any:
    """The stored form of the object at ``key`` now (``None`` if it no longer exists)."""
    kind, *ids = key
    if kind == "project":
        project = store.projects.get(ids[0])
        return project.to_json() if project else None
    if kind == "source":
        source = store.sources.get(ids[0])
        return source.meta_json() if source else None
    if kind == "comment":
        source = store.sources.get(ids[0])
        comment = source.comments.get(ids[1]) if source else None
        return comment.to_json() if comment else None
    return _dataset_value(store, kind, ids)


def _dataset_value(store: Tenant, kind: str, ids: list[Any]) -> Any:
    dataset = store.datasets.get(ids[0])
    if dataset is None:
        return None
    if kind == "dataset":
        return dataset.meta_json()
    if kind == "annotation":
        annotation = dataset.annotations.get(ids[1])
        return annotation.to_json() if annotation else None
    if kind == "stream":
        stream = dataset.streams.get(ids[1])
        return stream.to_json() if stream else None
    if kind == "model":
        version = dataset.models.get(ids[1])
        return version.to_json() if version else None
    return dict(dataset.model_tags)  # "tags"


def journal_record(store: Tenant, keys: list[tuple[Any, ...]]) -> dict[str, Any]:
    """The journal record of a write that changed the objects at ``keys``."""
    record: dict[str, Any] = {"puts": [[*key, current_value(store, key)] for key in keys if key != ("billing",)]}
    if ("billing",) in keys:
        record["billing"] = {name: getattr(store, name) for name in BILLING}
    return record


def apply_record(store: Tenant, record: dict[str, Any]) -> None:
    """Replay one journal record onto the store."""
    for put in record.get("puts", []):
        kind, *ids, value = put
        _apply_put(store, kind, ids, value)
    for name, value in (record.get("billing") or {}).items():
        if name in BILLING:
            setattr(store, name, value)


def _apply_put(store: Tenant, kind: str, ids: list[Any], value: Any) -> None:
    if kind == "project":
        _put(store.projects, ids[0], Project.from_json(value) if value is not None else None)
    elif kind == "source":
        _apply_source(store, ids[0], value)
    elif kind == "comment":
        source = store.sources.get(ids[0])
        if source is not None:
            _put(source.comments, ids[1], Comment.from_json(value) if value is not None else None)
    elif kind == "dataset":
        _apply_dataset(store, ids[0], value)
    else:
        _apply_dataset_part(store, kind, ids, value)


def _put(container: dict[Any, Any], key: Any, value: Any) -> None:
    if value is None:
        container.pop(key, None)
    else:
        container[key] = value


def _apply_source(store: Tenant, source_id: str, value: Any) -> None:
    if value is None:
        store.sources.pop(source_id, None)
        return
    existing = store.sources.get(source_id)
    source = Source.from_json(value)
    if existing is not None:
        source.comments = existing.comments
    store.sources[source_id] = source


def _apply_dataset(store: Tenant, dataset_id: str, value: Any) -> None:
    if value is None:
        store.datasets.pop(dataset_id, None)
        return
    existing = store.datasets.get(dataset_id)
    dataset = Dataset.from_json(value)
    if existing is not None:
        dataset.annotations, dataset.models = existing.annotations, existing.models
        dataset.model_tags, dataset.streams = existing.model_tags, existing.streams
    store.datasets[dataset_id] = dataset


def _apply_dataset_part(store: Tenant, kind: str, ids: list[Any], value: Any) -> None:
    dataset = store.datasets.get(ids[0])
    if dataset is None:
        return
    if kind == "annotation":
        _put(dataset.annotations, ids[1], Annotation.from_json(value) if value is not None else None)
    elif kind == "stream":
        _put(dataset.streams, ids[1], Stream.from_json(value) if value is not None else None)
    elif kind == "model":
        _put(dataset.models, int(ids[1]), ModelVersion.from_json(value) if value is not None else None)
    elif kind == "tags":
        dataset.model_tags = dict(value or {})


def snapshot(store: Tenant) -> dict[str, Any]:
    """The whole tenant in stored form."""
    return {
        "projects": {name: p.to_json() for name, p in store.projects.items()},
        "sources": [
            {**s.meta_json(), "comments": [c.to_json() for c in s.comments.values()]} for s in store.sources.values()
        ],
        "datasets": [
            {
                **d.meta_json(),
                "annotations": {uid: a.to_json() for uid, a in d.annotations.items()},
                "models": [m.to_json() for m in d.models.values()],
                "model_tags": d.model_tags,
                "streams": {name: s.to_json() for name, s in d.streams.items()},
            }
            for d in store.datasets.values()
        ],
        **{name: getattr(store, name) for name in BILLING},
    }


def load_snapshot(store: Tenant, data: dict[str, Any]) -> None:
    """Fill an empty store from a snapshot."""
    store.projects = {name: Project.from_json(p) for name, p in data.get("projects", {}).items()}
    for s in data.get("sources", []):
        source = Source.from_json(s)
        for stored in s.get("comments", []):
            comment = Comment.from_json(stored)
            source.comments[comment.id] = comment
        store.sources[source.id] = source
    for d in data.get("datasets", []):
        dataset = Dataset.from_json(d)
        dataset.annotations = {uid: Annotation.from_json(a) for uid, a in d.get("annotations", {}).items()}
        dataset.models = {int(m["version"]): ModelVersion.from_json(m) for m in d.get("models", [])}
        dataset.model_tags = dict(d.get("model_tags", {}))
        dataset.streams = {name: Stream.from_json(s) for name, s in (d.get("streams") or {}).items()}
        store.datasets[dataset.id] = dataset
    for name in BILLING:
        if name in data:
            setattr(store, name, data[name])


def write_snapshot(path: str, data: dict[str, Any]) -> None:
    """Write a snapshot atomically: a temporary file, fsynced, renamed over ``path``."""
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".emulator-state-", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(data, handle, separators=(",", ":"))
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
