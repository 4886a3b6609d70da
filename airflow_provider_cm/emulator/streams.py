"""Streams in the emulator: a cursor per stream over a dataset's comments in upload order.

Rules (API reference, section 3.7): ``fetch`` never moves the cursor; ``advance`` sets it to a
``sequence_id``; a batch of ``size`` comments counts those the ``comment_filter`` drops in
``filtered`` and covers them with its batch ``sequence_id``; each result has its own
``sequence_id``; ``model.version`` must be pinned and ``label_thresholds`` decide which predicted
labels are attached. Assumptions where the docs are silent: a new stream starts at its creation
time (it delivers comments uploaded afterwards; ``reset`` moves it back); comments are ordered by
``created_at`` then uid; ``is_end_sequence`` is true when the batch reached the current end.
"""

from __future__ import annotations

import bisect
import re
from typing import Any

from airflow_provider_cm.emulator.predictions import (
    MIN_REPORTED_PROBABILITY,
    label_threshold_map,
    probabilities,
    resolve_version,
    thresholded,
)
from airflow_provider_cm.emulator.state import (
    ApiError,
    Dataset,
    EmulatorState,
    bad_request,
    decode_continuation,
    encode_continuation,
    format_time,
    not_found,
    now_utc,
    parse_time,
    time_key,
)

STREAM_NAME = re.compile(r"[A-Za-z0-9_-]{1,256}")
MAX_FETCH_SIZE = 1024
# A cursor (key, uid) means every comment up to and including it was consumed.
_BEFORE_ALL = (0, "")


def _stream(dataset: Dataset, name: str) -> dict[str, Any]:
    stream = dataset.streams.get(name)
    if stream is None:
        raise not_found()
    return stream


def to_api(stream: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in stream.items() if not key.startswith("_")}


def put_stream(state: EmulatorState, dataset: Dataset, body: dict[str, Any]) -> dict[str, Any]:
    """Create a stream, or replace the definition of the one with the same name (its cursor stays)."""
    fields = body.get("stream")
    if not isinstance(fields, dict):
        raise bad_request("body must be {'stream': {...}}")
    name = fields.get("name")
    if not isinstance(name, str) or not STREAM_NAME.fullmatch(name):
        raise bad_request("stream name must match [A-Za-z0-9-_]{1,256}")
    model = fields.get("model")
    if model is not None:
        if (
            not isinstance(model, dict)
            or isinstance(model.get("version"), bool)
            or not isinstance(model.get("version"), int)
        ):
            raise bad_request("model.version must be an integer (a pinned model version)")
        resolve_version(dataset, model["version"])
        label_threshold_map(model.get("label_thresholds"), "model.label_thresholds")
    comment_filter = fields.get("comment_filter") or {}
    if not isinstance(comment_filter, dict):
        raise bad_request("comment_filter must be an object")
    stamp = format_time(now_utc())
    existing = dataset.streams.get(name)
    stream = {
        "id": existing["id"] if existing else f"{len(dataset.streams) + 1:016x}",
        "dataset_id": dataset.id,
        "name": name,
        "title": fields.get("title", ""),
        "description": fields.get("description", ""),
        "created_at": existing["created_at"] if existing else stamp,
        "updated_at": stamp,
        "comment_filter": comment_filter,
        "label_threshold_filter": None,
        "model": model,
        "_cursor": existing["_cursor"] if existing else [time_key(now_utc()), "\uffff"],
        "_exceptions": existing["_exceptions"] if existing else {},
    }
    dataset.streams[name] = stream
    state._mutated()
    return to_api(stream)


def get_stream(dataset: Dataset, name: str) -> dict[str, Any]:
    return to_api(_stream(dataset, name))


def delete_stream(state: EmulatorState, dataset: Dataset, name: str) -> None:
    _stream(dataset, name)
    del dataset.streams[name]
    state._mutated()


def _matches(state: EmulatorState, stream: dict[str, Any], source_id: str, comment: dict[str, Any]) -> bool:
    comment_filter = stream["comment_filter"]
    sources = comment_filter.get("sources")
    if sources and source_id not in sources:
        return False
    timestamp = comment_filter.get("timestamp")
    if timestamp:
        key = comment["_keys"]["timestamp"]
        if timestamp.get("minimum") and key < time_key(parse_time(timestamp["minimum"], "minimum")):
            return False
        if timestamp.get("maximum") and key > time_key(parse_time(timestamp["maximum"], "maximum")):
            return False
    properties = comment.get("user_properties") or {}
    for key, rule in (comment_filter.get("user_properties") or {}).items():
        value = properties.get(key)
        if "one_of" in rule and value not in rule["one_of"]:
            return False
        if "not_one_of" in rule and value in rule["not_one_of"]:
            return False
        if "minimum" in rule and (value is None or value < rule["minimum"]):
            return False
        if "maximum" in rule and (value is None or value > rule["maximum"]):
            return False
    return True


def _result(dataset: Dataset, stream: dict[str, Any], comment: dict[str, Any], state: EmulatorState) -> dict[str, Any]:
    result: dict[str, Any] = {"comment": state.public_comment(comment, dataset), "entities": []}
    model = stream.get("model")
    if model:
        scores = probabilities(dataset, model["version"], comment)
        thresholds = label_threshold_map(model.get("label_thresholds"), "model.label_thresholds")
        result["labels"] = thresholded(scores, thresholds, MIN_REPORTED_PROBABILITY)
    else:
        result["labels"] = []
    return result


def fetch(state: EmulatorState, dataset: Dataset, name: str, body: dict[str, Any]) -> dict[str, Any]:
    """``POST .../streams/<name>/fetch``: the next batch after the cursor; the cursor does not move."""
    stream = _stream(dataset, name)
    size = body.get("size")
    if isinstance(size, bool) or not isinstance(size, int) or not 1 <= size <= MAX_FETCH_SIZE:
        raise bad_request(f"size must be an integer from 1 to {MAX_FETCH_SIZE}")
    max_filtered = body.get("max_filtered")
    if max_filtered is not None and (
        isinstance(max_filtered, bool) or not isinstance(max_filtered, int) or not 1 <= max_filtered <= MAX_FETCH_SIZE
    ):
        raise bad_request(f"max_filtered must be an integer from 1 to {MAX_FETCH_SIZE}")
    rows = state._sorted_index(dataset, "created_at", tuple(dataset.source_ids))
    position = bisect.bisect_right(rows, (*stream["_cursor"], "\uffff", "\uffff"))
    results: list[dict[str, Any]] = []
    filtered = 0
    last = stream["_cursor"]
    while position < len(rows) and len(results) + filtered < size:
        key, uid, source_id, comment_id = rows[position]
        comment = state.sources[source_id].comments[comment_id]
        position += 1
        last = [key, uid]
        if _matches(state, stream, source_id, comment):
            result = _result(dataset, stream, comment, state)
            result["sequence_id"] = encode_continuation(key, uid)
            results.append(result)
        else:
            filtered += 1
            if max_filtered is not None and filtered >= max_filtered:
                break
    return {
        "results": results,
        "filtered": filtered,
        "is_end_sequence": position >= len(rows),
        "sequence_id": encode_continuation(*last),
    }


def results(state: EmulatorState, dataset: Dataset, name: str, max_results: int, max_filtered: int | None) -> dict:
    """``GET .../streams/<name>/results``: like ``fetch``, with each result's ``continuation``."""
    batch = fetch(state, dataset, name, {"size": max_results, "max_filtered": max_filtered})
    for result in batch["results"]:
        result["continuation"] = result["sequence_id"]
    return {
        "results": batch["results"],
        "continuation": batch["sequence_id"],
        "is_end_sequence": batch["is_end_sequence"],
    }


def advance(state: EmulatorState, dataset: Dataset, name: str, body: dict[str, Any]) -> None:
    """``POST .../streams/<name>/advance``: set the cursor to a ``sequence_id`` (repeating it is harmless)."""
    stream = _stream(dataset, name)
    sequence_id = body.get("sequence_id")
    if not isinstance(sequence_id, str) or not sequence_id:
        raise bad_request("sequence_id must be a non-empty string")
    try:
        key, uid = decode_continuation(sequence_id)
    except ApiError:
        raise bad_request("sequence_id is not valid for this stream") from None
    stream["_cursor"] = [key, uid]
    state._mutated()


def reset(state: EmulatorState, dataset: Dataset, name: str, body: dict[str, Any]) -> dict[str, Any]:
    """``POST .../streams/<name>/reset``: move to just before the first comment created at or after a time."""
    stream = _stream(dataset, name)
    if "to_comment_created_at" not in body:
        raise bad_request("to_comment_created_at is required")
    moment = time_key(parse_time(body["to_comment_created_at"], "to_comment_created_at"))
    stream["_cursor"] = [moment - 1, "\uffff"]
    state._mutated()
    return {"sequence_id": encode_continuation(*stream["_cursor"]), "stream": to_api(stream)}


def tag_exceptions(state: EmulatorState, dataset: Dataset, name: str, body: dict[str, Any]) -> None:
    stream = _stream(dataset, name)
    exceptions = body.get("exceptions")
    if not isinstance(exceptions, list) or not exceptions:
        raise bad_request("exceptions must be a non-empty list of {uid, metadata: {type}}")
    for index, item in enumerate(exceptions):
        if not isinstance(item, dict) or not isinstance(item.get("uid"), str):
            raise bad_request(f"exceptions[{index}].uid must be a comment uid")
        metadata = item.get("metadata")
        if not isinstance(metadata, dict) or not isinstance(metadata.get("type"), str) or not metadata["type"]:
            raise bad_request(f"exceptions[{index}].metadata.type must be a non-empty string")
        state._comment_by_uid(dataset, item["uid"])
    for item in exceptions:
        stream["_exceptions"][item["uid"]] = item["metadata"]
    state._mutated()


def untag_exceptions(state: EmulatorState, dataset: Dataset, name: str, uids: list[str]) -> None:
    stream = _stream(dataset, name)
    for uid in uids:
        stream["_exceptions"].pop(uid, None)
    state._mutated()


def exceptions(dataset: Dataset, name: str) -> dict[str, Any]:
    return dict(_stream(dataset, name)["_exceptions"])
