"""Dataset export: ``POST /api/v1/datasets/<p>/<d>/export``, paged by ``continuation``.

Comments come in ``order_by`` order (``timestamp`` by default, or ``created_at``), ``from`` and
``to`` both inclusive; ``comment_uids`` (at most 256) excludes every other filter. Assigned label
names are joined with ``" > "`` and listed together with their parents; a label written with
``metadata`` keeps it (its parents listed beside it have none, unless assigned themselves).
``predictions`` holds the labels the dataset's latest pinned model version predicts
(:func:`~airflow_provider_cm.emulator.routes.predictions.latest_predictions`), without its version, as
the platform's export does.
"""

from __future__ import annotations

import bisect
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from airflow_provider_cm.api import routes as api
from airflow_provider_cm.api.limits import (
    DEFAULT_EXPORT_LIMIT,
    MAX_EXPORT_LIMIT,
    MAX_EXPORT_SOURCE_IDS,
    MAX_EXPORT_UIDS,
)
from airflow_provider_cm.api.times import time_key
from airflow_provider_cm.emulator.errors import ApiError, bad_request
from airflow_provider_cm.emulator.openapi import doc
from airflow_provider_cm.emulator.routes.labellings import public_comment
from airflow_provider_cm.emulator.routes.predictions import latest_predictions
from airflow_provider_cm.emulator.rules.checks import array, integer, obj, string, timestamp
from airflow_provider_cm.emulator.schemas import EXPORTED_COMMENT, STRING, envelope, list_of
from airflow_provider_cm.emulator.state.positions import decode_position, encode_position
from airflow_provider_cm.emulator.state.records import Comment, Dataset
from airflow_provider_cm.emulator.state.store import Store
from airflow_provider_cm.emulator.wire import json_body, ok, parse_time

EXPORT_BODY = obj(
    {
        "limit": integer(minimum=1, maximum=MAX_EXPORT_LIMIT),
        "comment_uids": array(string(), max_items=MAX_EXPORT_UIDS),
        "source_ids": array(string(), max_items=MAX_EXPORT_SOURCE_IDS),
        "order_by": string(choices=("timestamp", "created_at")),
        "from": timestamp(),
        "to": timestamp(),
        "continuation": string(min_len=1),
    }
)


PAGE = {"allOf": [envelope(comments=list_of(EXPORTED_COMMENT)), {"properties": {"continuation": STRING}}]}


def with_parents(labels: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Expand ``"A > B"`` into ``"A"`` and ``"A > B"``, as the export lists parents with children;
    the label as assigned keeps its ``metadata``."""
    out: list[dict[str, Any]] = []
    index: dict[str, int] = {}
    for label in labels:
        parts = label["name"].split(" > ")
        for depth in range(1, len(parts) + 1):
            name = " > ".join(parts[:depth])
            own = depth == len(parts)
            if name in index:
                if own and "metadata" in label:
                    out[index[name]]["metadata"] = label["metadata"]
                continue
            index[name] = len(out)
            entry: dict[str, Any] = {"name": name}
            if "sentiment" in label:
                entry["sentiment"] = label["sentiment"]
            if own and "metadata" in label:
                entry["metadata"] = label["metadata"]
            out.append(entry)
    return out


def exported_comment(store: Store, dataset: Dataset, comment: Comment) -> dict[str, Any]:
    """``{"comment", "annotations": {"labels": {"assigned"}, "entities"?}, "predictions": {"labels"}}``
    for one comment."""
    annotation = dataset.annotations.get(comment.uid)
    if annotation is None:
        annotations: dict[str, Any] = {"labels": {"assigned": []}}
    else:
        annotations = {"labels": {"assigned": with_parents(annotation.assigned_labels())}}
        entities = (annotation.entities or {}).get("assigned")
        if entities:
            annotations["entities"] = {"assigned": entities}
    return {
        "comment": public_comment(store, comment, dataset),
        "annotations": annotations,
        "predictions": latest_predictions(dataset, comment.fields),
    }


def _by_uids(store: Store, dataset: Dataset, body: dict[str, Any]) -> dict[str, Any]:
    others = [k for k in ("source_ids", "order_by", "from", "to", "continuation") if k in body]
    if others:
        raise bad_request(f"comment_uids cannot be combined with {', '.join(others)}")
    found = []
    for uid in body["comment_uids"]:
        try:
            found.append(store.comment_by_uid(dataset, uid))
        except ApiError:
            continue
    return {"comments": [exported_comment(store, dataset, c) for c in found]}


def _selected_sources(dataset: Dataset, source_ids: list[str] | None) -> tuple[str, ...]:
    if source_ids is None:
        return tuple(dataset.source_ids)
    unknown = [s for s in source_ids if s not in dataset.source_ids]
    if unknown:
        raise bad_request(f"source ids not in this dataset: {', '.join(unknown)}")
    return tuple(s for s in dataset.source_ids if s in source_ids)


def _bound(body: dict[str, Any], name: str) -> int | None:
    return time_key(parse_time(body[name], name)) if body.get(name) is not None else None


def export(store: Store, dataset: Dataset, body: dict[str, Any]) -> dict[str, Any]:
    """One page of the export and, if more comments follow, its ``continuation``."""
    EXPORT_BODY(body, "body")
    if body.get("comment_uids") is not None:
        return _by_uids(store, dataset, body)
    limit = body.get("limit") or DEFAULT_EXPORT_LIMIT
    low, high = _bound(body, "from"), _bound(body, "to")
    rows = store.sorted_index(
        dataset, body.get("order_by") or "timestamp", _selected_sources(dataset, body.get("source_ids"))
    )
    if body.get("continuation") is not None:
        key, uid = decode_position(body["continuation"])
        position = bisect.bisect_right(rows, (key, uid, "\uffff", "\uffff"))
    else:
        position = bisect.bisect_left(rows, (low,)) if low is not None else 0
    page: list[dict[str, Any]] = []
    while position < len(rows) and len(page) < limit:
        key, uid, source_id, comment_id = rows[position]
        if high is not None and key > high:
            break
        if low is None or key >= low:
            page.append(exported_comment(store, dataset, store.sources[source_id].comments[comment_id]))
        position += 1
    result: dict[str, Any] = {"comments": page}
    more = position < len(rows) and (high is None or rows[position][0] <= high)
    if more and page:
        result["continuation"] = encode_position(*rows[position - 1][:2])
    return result


def router(store: Store) -> APIRouter:
    """The export route."""
    routes = APIRouter()

    @routes.post(api.EXPORT.url, **doc(PAGE, body=EXPORT_BODY, errors=(400, 404)))
    async def export_route(project: str, name: str, request: Request) -> Response:
        body = await json_body(request)
        return ok(**store.read(lambda s: export(s, s.dataset(project, name), body)))

    return routes
