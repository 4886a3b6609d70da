"""Reading a stream: ``fetch`` (legacy) and ``results`` (new) batches, ``advance`` and ``reset``.

``fetch`` never moves the cursor; a batch of ``size`` comments counts those the filter drops in
``filtered`` and covers them with its batch ``sequence_id``; each result has its own
``sequence_id``; ``advance`` sets the cursor to one (repeating it is harmless); ``reset`` moves it
to just before the first comment created at or after a time. Comments are ordered by
``created_at`` then uid; ``is_end_sequence`` is true when the batch reached the current end.
"""

from __future__ import annotations

import bisect
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from airflow_provider_cm.api import routes as api
from airflow_provider_cm.api.limits import MAX_STREAM_FETCH
from airflow_provider_cm.api.times import time_key
from airflow_provider_cm.emulator.errors import bad_request
from airflow_provider_cm.emulator.openapi import doc, query_value
from airflow_provider_cm.emulator.routes.labellings import public_comment
from airflow_provider_cm.emulator.routes.predictions import (
    MIN_REPORTED_PROBABILITY,
    label_threshold_map,
    probabilities,
    thresholded,
)
from airflow_provider_cm.emulator.routes.streams import NOUNS, find_stream, stream_url
from airflow_provider_cm.emulator.rules.checks import integer, obj, string, timestamp
from airflow_provider_cm.emulator.rules.stream_filters import matches
from airflow_provider_cm.emulator.schemas import BATCH, RESULTS, STREAM, STRING, envelope
from airflow_provider_cm.emulator.state.positions import decode_position, encode_position
from airflow_provider_cm.emulator.state.records import Comment, Dataset, Stream
from airflow_provider_cm.emulator.state.store import Store
from airflow_provider_cm.emulator.wire import json_body, ok, parse_time

DEFAULT_RESULTS = 16
SIZE = integer(minimum=1, maximum=MAX_STREAM_FETCH)
FETCH_BODY = obj({"size": SIZE, "max_filtered": SIZE}, required=("size",))
RESULTS_QUERY = (
    query_value("max_results", SIZE, description=f"results at most (default {DEFAULT_RESULTS})"),
    query_value("max_filtered", SIZE, description="comments the filter drops at most"),
)
ADVANCE_BODY = obj({"sequence_id": string(min_len=1)}, required=("sequence_id",))
RESET_BODY = obj({"to_comment_created_at": timestamp()}, required=("to_comment_created_at",))


def _result(store: Store, dataset: Dataset, stream: Stream, comment: Comment) -> dict[str, Any]:
    result: dict[str, Any] = {"comment": public_comment(store, comment, dataset), "entities": [], "labels": []}
    if stream.model:
        scores = probabilities(dataset, stream.model["version"], comment.fields)
        thresholds = label_threshold_map(stream.model.get("label_thresholds"))
        result["labels"] = thresholded(scores, thresholds, MIN_REPORTED_PROBABILITY)
    return result


def fetch(store: Store, dataset: Dataset, name: str, body: dict[str, Any]) -> dict[str, Any]:
    """The next batch after the cursor; the cursor does not move."""
    stream = find_stream(dataset, name)
    FETCH_BODY(body, "body")
    size, max_filtered = body["size"], body.get("max_filtered")
    rows = store.sorted_index(dataset, "created_at", tuple(dataset.source_ids))
    position = bisect.bisect_right(rows, (*stream.cursor, "\uffff", "\uffff"))
    results: list[dict[str, Any]] = []
    filtered = 0
    last = stream.cursor
    while position < len(rows) and len(results) + filtered < size:
        key, uid, source_id, comment_id = rows[position]
        comment = store.sources[source_id].comments[comment_id]
        position += 1
        last = (key, uid)
        if matches(store, dataset, stream.comment_filter, source_id, comment):
            results.append({**_result(store, dataset, stream, comment), "sequence_id": encode_position(key, uid)})
            continue
        filtered += 1
        if max_filtered is not None and filtered >= max_filtered:
            break
    return {
        "results": results,
        "filtered": filtered,
        "is_end_sequence": position >= len(rows),
        "sequence_id": encode_position(*last),
    }


def results(store: Store, dataset: Dataset, name: str, query: dict[str, str]) -> dict[str, Any]:
    """``GET .../results``: like ``fetch``, with each result's ``continuation``."""
    try:
        max_results = int(query.get("max_results", str(DEFAULT_RESULTS)))
        max_filtered = int(query["max_filtered"]) if "max_filtered" in query else None
    except ValueError:
        raise bad_request("max_results and max_filtered must be integers") from None
    request: dict[str, Any] = {"size": max_results}
    if max_filtered is not None:
        request["max_filtered"] = max_filtered
    batch = fetch(store, dataset, name, request)
    for result in batch["results"]:
        result["continuation"] = result["sequence_id"]
    return {
        "results": batch["results"],
        "continuation": batch["sequence_id"],
        "is_end_sequence": batch["is_end_sequence"],
    }


def advance(store: Store, dataset: Dataset, name: str, body: dict[str, Any]) -> None:
    """Set the cursor to a ``sequence_id``."""
    stream = find_stream(dataset, name)
    ADVANCE_BODY(body, "body")
    store.move_stream_cursor(dataset, stream, decode_position(body["sequence_id"], "sequence_id"))


def reset(store: Store, dataset: Dataset, name: str, body: dict[str, Any], noun: str = "stream") -> dict[str, Any]:
    """Move the cursor to just before the first comment created at or after a time."""
    stream = find_stream(dataset, name)
    RESET_BODY(body, "body")
    moment = time_key(parse_time(body["to_comment_created_at"], "to_comment_created_at"))
    store.move_stream_cursor(dataset, stream, (moment - 1, "\uffff"))
    return {"sequence_id": encode_position(*stream.cursor), noun: stream.to_api()}


def _register(routes: APIRouter, store: Store, plural: str, singular: str) -> None:
    reset_answer = envelope(sequence_id=STRING, **{singular: STREAM})

    @routes.post(stream_url("FETCH_STREAM", plural), **doc(envelope(**BATCH), body=FETCH_BODY, errors=(400, 404)))
    async def fetch_route(project: str, name: str, stream: str, request: Request) -> Response:
        body = await json_body(request)
        return ok(**store.read(lambda s: fetch(s, s.dataset(project, name), stream, body)))

    @routes.post(stream_url("ADVANCE_STREAM", plural), **doc(envelope(), body=ADVANCE_BODY, errors=(400, 404)))
    async def advance_route(project: str, name: str, stream: str, request: Request) -> Response:
        body = await json_body(request)
        await store.write(lambda s: advance(s, s.dataset(project, name), stream, body))
        return ok()

    @routes.post(stream_url("RESET_STREAM", plural), **doc(reset_answer, body=RESET_BODY, errors=(400, 404)))
    async def reset_route(project: str, name: str, stream: str, request: Request) -> Response:
        body = await json_body(request)
        return ok(**(await store.write(lambda s: reset(s, s.dataset(project, name), stream, body, singular))))


def router(store: Store) -> APIRouter:
    """The stream reading routes, under both names, and ``results`` (also under ``/api/preview``)."""
    routes = APIRouter()
    for plural, singular in NOUNS:
        _register(routes, store, plural, singular)

    results_doc = doc(envelope(**RESULTS), errors=(400, 404), query=RESULTS_QUERY)

    @routes.get(api.STREAM_RESULTS.url, **results_doc)
    @routes.get(api.PREVIEW_STREAM_RESULTS.url, **results_doc)
    async def results_route(project: str, name: str, stream: str, request: Request) -> Response:
        query = dict(request.query_params)
        return ok(**store.read(lambda s: results(s, s.dataset(project, name), stream, query)))

    return routes
