"""Reading annotations back: by uid, or every reviewed comment of a source, page by page.

One route, ``GET /api/_private/datasets/<p>/<d>/labellings``, in two forms (the official CLI's
``get_labellings`` and ``get_labellings_in_bulk``):

* ``?id=<uid>&id=<uid>...``: the annotated comments of those uids, in the order asked; 404 if one
  is not a comment of the dataset's sources.
* ``?source_id=<id>&return_predictions=<bool>&after=<cursor>&limit=<n>``: the source's comments
  that hold annotations in the dataset (assigned or dismissed labels or entities, or field
  extractions), ``limit`` at a time (default :data:`DEFAULT_ANNOTATION_PAGE`, at most :data:`MAX_ANNOTATION_PAGE`), in
  ``created_at`` then uid order, with ``after``: the cursor of the page's last comment, to pass
  back for the next page. A page after the last one has no results and gives back the cursor it
  was asked for (the CLI stops at the first empty page).

``return_predictions=true`` adds the predicted labels of the dataset's latest pinned model version,
if it has one, to the ``default`` group (``predicted``, most likely first).
"""

from __future__ import annotations

import bisect
import copy
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from airflow_provider_cm.api import routes as api
from airflow_provider_cm.api.limits import DEFAULT_ANNOTATION_PAGE, MAX_ANNOTATION_PAGE
from airflow_provider_cm.emulator.errors import bad_request, not_found
from airflow_provider_cm.emulator.openapi import doc, query_list, query_value
from airflow_provider_cm.emulator.routes.labellings import annotated_comment
from airflow_provider_cm.emulator.routes.predictions import MIN_REPORTED_PROBABILITY, probabilities, thresholded
from airflow_provider_cm.emulator.rules.checks import array, boolean, integer, string
from airflow_provider_cm.emulator.schemas import ANNOTATED_COMMENT, STRING, envelope, list_of, optional
from airflow_provider_cm.emulator.state.positions import decode_position, encode_position
from airflow_provider_cm.emulator.state.records import Annotation, Comment, Dataset
from airflow_provider_cm.emulator.state.store import Store
from airflow_provider_cm.emulator.wire import ok

QUERY = [
    query_list("id", array(string()), description="the uids of the comments to read (not with source_id)"),
    query_value("source_id", string(min_len=1), description="read the reviewed comments of this source, by pages"),
    query_value("return_predictions", boolean(), description="add the latest pinned model's predicted labels"),
    query_value("after", string(min_len=1), description="the cursor a previous page answered (with source_id)"),
    query_value(
        "limit",
        integer(minimum=1, maximum=MAX_ANNOTATION_PAGE),
        description=f"comments per page (with source_id; default {DEFAULT_ANNOTATION_PAGE})",
    ),
]
ANSWER = envelope(results=list_of(ANNOTATED_COMMENT), after=optional(STRING))
_PAGE_ONLY = ("after", "limit")


def _flag(text: str | None, name: str) -> bool:
    if text is None or text == "false":
        return False
    if text == "true":
        return True
    raise bad_request(f"{name} must be true or false")


def _limit(text: str | None) -> int:
    if text is None:
        return DEFAULT_ANNOTATION_PAGE
    if not text.isascii() or not text.isdigit() or not 1 <= int(text) <= MAX_ANNOTATION_PAGE:
        raise bad_request(f"limit must be an integer from 1 to {MAX_ANNOTATION_PAGE}")
    return int(text)


def _reviewed(annotation: Annotation | None) -> bool:
    """Whether a comment holds any annotation in the dataset (what the source-wide read lists)."""
    return annotation is not None and annotation.reviewed()


def _with_predictions(dataset: Dataset, annotated: dict[str, Any], comment: Comment) -> dict[str, Any]:
    """``annotated`` with the latest pinned version's predictions in its ``default`` group."""
    if not dataset.models:
        return annotated
    scores = probabilities(dataset, max(dataset.models), comment.fields)
    predicted = thresholded(scores, None, MIN_REPORTED_PROBABILITY)
    out = copy.deepcopy(annotated)
    groups = out.setdefault("labelling", [])
    default = next((group for group in groups if group.get("group") == "default"), None)
    if default is None:
        default = {"group": "default"}
        groups.append(default)
    default["predicted"] = predicted
    return out


def by_uid(store: Store, dataset: Dataset, uids: list[str], predictions: bool) -> dict[str, Any]:
    """The annotated comments of ``uids``; 404 if one is not in the dataset."""
    results = []
    for uid in uids:
        comment = store.comment_by_uid(dataset, uid)
        annotated = annotated_comment(store, dataset, comment)
        results.append(_with_predictions(dataset, annotated, comment) if predictions else annotated)
    return {"results": results, "after": None}


def source_page(
    store: Store, dataset: Dataset, source_id: str, *, after: str | None, limit: int, predictions: bool
) -> dict[str, Any]:
    """One page of a source's reviewed comments after the cursor ``after``."""
    if source_id not in dataset.source_ids or source_id not in store.sources:
        raise not_found()
    rows = store.sorted_index(dataset, "created_at", (source_id,))
    position = 0
    if after is not None:
        position = bisect.bisect_right(rows, (*decode_position(after, "after"), "\uffff", "\uffff"))
    results: list[dict[str, Any]] = []
    cursor = after
    while position < len(rows) and len(results) < limit:
        key, uid, _, comment_id = rows[position]
        position += 1
        if not _reviewed(dataset.annotations.get(uid)):
            continue
        comment = store.sources[source_id].comments[comment_id]
        annotated = annotated_comment(store, dataset, comment)
        results.append(_with_predictions(dataset, annotated, comment) if predictions else annotated)
        cursor = encode_position(key, uid)
    return {"results": results, "after": cursor}


def read(store: Store, dataset: Dataset, query: Any) -> dict[str, Any]:
    """Either form of the read, from the request's query parameters."""
    uids = query.getlist("id")
    source_id = query.get("source_id")
    predictions = _flag(query.get("return_predictions"), "return_predictions")
    if source_id is None:
        if any(query.get(name) is not None for name in _PAGE_ONLY):
            raise bad_request("after and limit page a source's annotations: give source_id with them")
        return by_uid(store, dataset, uids, predictions)
    if uids:
        raise bad_request("give either id (comments by uid) or source_id (a source's comments), not both")
    limit = _limit(query.get("limit"))
    return source_page(store, dataset, source_id, after=query.get("after"), limit=limit, predictions=predictions)


def router(store: Store) -> APIRouter:
    """The annotation read route."""
    routes = APIRouter()

    @routes.get(api.READ_ANNOTATIONS.url, **doc(ANSWER, errors=(400, 404), query=QUERY))
    async def read_route(project: str, name: str, request: Request) -> Response:
        query = request.query_params
        return ok(**store.read(lambda s: read(s, s.dataset(project, name), query)))

    return routes
