"""Every response the emulator serves, checked against the vendor's own contracts.

The shapes below are written from two sources: the official CLI's response types (crate ``api``
of ``reinfer/cli``, ``api/src/resources/*.rs``: a field that is not an ``Option`` and has no serde
default must be present with its type, or ``re`` fails to deserialize the response) and the
Power Automate connector's Swagger 2.0 (``reinfer/power-automate-connector``,
``apiDefinition.swagger.json``: its ``required`` lists and property types). Where the two disagree
the newer CLI wins (the 2021 Swagger forbids the sync counts and ``is_end_sequence``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import requests

from tests.conftest import TOKEN, make_record

AUTH = {"Authorization": f"Bearer {TOKEN}"}

TIME = "time"  # an RFC 3339 time (chrono's DateTime<Utc>)
U32 = "u32"


class Optional:
    """A field that may be absent or null (``Option<T>``), of the given shape when present."""

    def __init__(self, shape: Any) -> None:
        self.shape = shape


# -- shapes, from the CLI's types (required fields) plus the Swagger's required lists ------------

MESSAGE = {"body": {"text": str}}
COMMENT = {
    "id": str,
    "uid": str,
    "timestamp": TIME,
    "messages": [MESSAGE],
    "created_at": TIME,
    "thread_id": Optional(str),
    "user_properties": Optional(dict),
    "has_annotations": Optional(bool),
}
SOURCE = {
    "id": str,
    "owner": str,
    "name": str,
    "title": str,
    "description": str,
    "language": str,
    "should_translate": bool,
    "sensitive_properties": [str],
    "created_at": TIME,
    "updated_at": TIME,
    "bucket_id": Optional(str),
}
ENTITY_DEF = {"id": str, "name": str, "title": str, "color": U32, "inherits_from": [str], "trainable": bool}
LABEL_DEF = {"name": str, "title": Optional(str), "description": Optional(str)}
DATASET = {
    "id": str,
    "name": str,
    "owner": str,
    "title": str,
    "description": str,
    "created": TIME,
    "last_modified": TIME,
    "model_family": str,
    "source_ids": [str],
    "has_sentiment": bool,
    "entity_defs": [ENTITY_DEF],
    "general_fields": [dict],
    "label_defs": [LABEL_DEF],
    "label_groups": [{"name": str, "label_defs": Optional([LABEL_DEF])}],
    "_dataset_flags": [str],
}
LABEL_THRESHOLD = {"name": [str], "threshold": float}
STREAM = {
    "id": str,
    "dataset_id": str,
    "name": str,
    "title": str,
    "description": str,
    "created_at": TIME,
    "updated_at": TIME,
    "comment_filter": Optional(dict),
    "label_threshold_filter": Optional({"label": str, "model_version": U32, "threshold": float}),
    "model": Optional({"version": U32, "label_thresholds": [LABEL_THRESHOLD]}),
}
PREDICTED_LABEL = {"probability": float}
STREAM_RESULT = {
    "comment": COMMENT,
    "sequence_id": str,
    "labels": Optional([PREDICTED_LABEL]),
    "entities": Optional([dict]),
}
BATCH = {"results": [STREAM_RESULT], "filtered": U32, "sequence_id": str, "is_end_sequence": bool}
LABEL = {"name": str, "sentiment": Optional(str)}
ANNOTATED_COMMENT = {
    "comment": COMMENT,
    "labelling": Optional([{"group": str, "assigned": Optional([LABEL]), "dismissed": Optional([LABEL])}]),
    "entities": Optional({"assigned": Optional([dict]), "dismissed": Optional([dict])}),
}
EXPORTED = {"comment": COMMENT, "annotations": {"labels": {"assigned": [LABEL]}}}
#: The CLI's ``GetAnnotationsResponse`` (by uid and the source-wide bulk read alike).
ANNOTATIONS_PAGE = {"results": [ANNOTATED_COMMENT], "after": Optional(str)}


def conforms(value: Any, shape: Any, where: str = "$") -> list[str]:
    """Every way ``value`` falls short of ``shape`` (empty if it conforms)."""
    if isinstance(shape, Optional):
        return [] if value is None else conforms(value, shape.shape, where)
    if shape in (TIME, U32, float) or isinstance(shape, type):
        return scalar_problems(value, shape, where)
    if isinstance(shape, list):
        if not isinstance(value, list):
            return [f"{where}: {value!r} is not a list"]
        return [problem for i, item in enumerate(value) for problem in conforms(item, shape[0], f"{where}[{i}]")]
    if not isinstance(value, dict):
        return [f"{where}: {value!r} is not an object"]
    problems = []
    for key, field_shape in shape.items():
        if key not in value and not isinstance(field_shape, Optional):
            problems.append(f"{where}.{key}: missing")
        elif key in value:
            problems.extend(conforms(value[key], field_shape, f"{where}.{key}"))
    return problems


def scalar_problems(value: Any, shape: Any, where: str) -> list[str]:
    """How ``value`` falls short of a scalar shape: an RFC 3339 time, a u32, a number or a type."""
    if shape == TIME:
        try:
            datetime.fromisoformat(value.replace("Z", "+00:00"))
            return [] if value.endswith(("Z", "+00:00")) else [f"{where}: {value!r} has no zone"]
        except (AttributeError, ValueError):
            return [f"{where}: {value!r} is not an RFC 3339 time"]
    if shape == U32:
        ok = isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**32
        return [] if ok else [f"{where}: {value!r} is not a u32"]
    if shape is float:
        return [] if isinstance(value, (int, float)) and not isinstance(value, bool) else [f"{where}: not a number"]
    return [] if isinstance(value, shape) else [f"{where}: {value!r} is not {shape.__name__}"]


def call(emulator, method: str, path: str, body: Any = None) -> dict[str, Any]:
    response = requests.request(method, f"{emulator.url}/{path}", json=body, headers=AUTH, timeout=30)
    payload = response.json()
    assert response.status_code == 200 and payload["status"] == "ok", (path, response.status_code, payload)
    return payload


def assert_conforms(value: Any, shape: Any) -> None:
    problems = conforms(value, shape)
    assert not problems, problems


def test_source_routes_answer_what_the_client_and_the_connector_require(emulator, hook, workspace):
    created = call(emulator, "PUT", f"api/v1/sources/{workspace.project}/plain", {"source": {}})["source"]
    assert_conforms(created, SOURCE)
    assert "bucket_id" not in created  # the connector types it string: absent, never null
    with_bucket = {"source": {"bucket_id": "0123456789abcdef", "language": "de", "should_translate": True}}
    assert call(emulator, "PUT", f"api/v1/sources/{workspace.project}/bucketed", with_bucket)["source"]["bucket_id"]
    for path in (
        "api/v1/sources",
        f"api/v1/sources/{workspace.project}",
    ):
        for source in call(emulator, "GET", path)["sources"]:
            assert_conforms(source, SOURCE)
    for path in (f"api/v1/sources/{workspace.source}", f"api/v1/sources/id:{workspace.source_id}"):
        assert_conforms(call(emulator, "GET", path)["source"], SOURCE)
    updated = call(
        emulator, "POST", f"api/v1/sources/{workspace.source}", {"source": {"title": "New", "bucket_id": None}}
    )
    assert_conforms(updated["source"], SOURCE)


def test_dataset_routes_answer_entity_defs_with_id_and_color(emulator, hook, workspace):
    entity = {"name": "order_number", "title": "Order number", "inherits_from": [], "trainable": True}
    body = {"dataset": {"source_ids": [workspace.source_id], "entity_defs": [entity], "label_defs": [{"name": "A"}]}}
    created = call(emulator, "PUT", f"api/v1/datasets/{workspace.project}/with-entities", body)["dataset"]
    assert_conforms(created, DATASET)
    assert created["entity_defs"][0]["name"] == "order_number" and created["entity_defs"][0]["id"]
    for path in ("api/v1/datasets", f"api/v1/datasets/{workspace.project}"):
        for dataset in call(emulator, "GET", path)["datasets"]:
            assert_conforms(dataset, DATASET)
    assert_conforms(call(emulator, "GET", f"api/v1/datasets/{workspace.project}/with-entities")["dataset"], DATASET)
    assert_conforms(call(emulator, "GET", f"api/v1/datasets/id:{created['id']}")["dataset"], DATASET)
    updated = call(emulator, "POST", f"api/v1/datasets/{workspace.dataset}", {"dataset": {"title": "T"}})
    assert_conforms(updated["dataset"], DATASET)


def test_comment_annotation_and_export_routes(emulator, hook, workspace):
    comment = make_record("c1", "2026-10-01T00:00:00Z")["comment"] | {"thread_id": "t1"}
    counts = call(emulator, "POST", f"api/v1/sources/{workspace.source}/sync", {"comments": [comment]})
    assert_conforms(counts, {"new": U32, "updated": U32, "unchanged": U32})
    call(emulator, "PUT", f"api/_private/sources/{workspace.source}/comments", {"comments": [comment]})
    assert_conforms(call(emulator, "GET", f"api/v1/sources/{workspace.source}/comments/c1")["comment"], COMMENT)
    uid = f"{workspace.source_id}.c1"
    labelling = {"labelling": [{"group": "default", "assigned": [{"name": "A", "sentiment": "positive"}]}]}
    written = call(emulator, "POST", f"api/_private/datasets/{workspace.dataset}/labellings/{uid}", labelling)
    assert_conforms(written, ANNOTATED_COMMENT)
    read = call(emulator, "GET", f"api/_private/datasets/{workspace.dataset}/labellings?id={uid}")
    assert_conforms(read, ANNOTATIONS_PAGE)
    page = call(
        emulator, "GET", f"api/_private/datasets/{workspace.dataset}/labellings?source_id={workspace.source_id}"
    )
    assert_conforms(page, ANNOTATIONS_PAGE)
    assert [r["comment"]["uid"] for r in page["results"]] == [uid] and page["after"]
    bulk = f"labellings?source_id={workspace.source_id}&return_predictions=false&limit=8&after={page['after']}"
    last = call(emulator, "GET", f"api/_private/datasets/{workspace.dataset}/{bulk}")
    assert_conforms(last, ANNOTATIONS_PAGE)
    assert last["results"] == []  # the CLI stops at the first empty page
    page = call(emulator, "POST", f"api/v1/datasets/{workspace.dataset}/export", {})
    assert_conforms(page, {"comments": [EXPORTED], "continuation": Optional(str)})


def test_stream_routes_answer_a_model_with_label_thresholds_under_both_names(emulator, hook, workspace):
    hook.sync_comments(workspace.source, [make_record("s0", "2026-10-01T00:00:00Z")["comment"]])
    hook.update_annotations(workspace.dataset, f"{workspace.source_id}.s0", labelling=[{"assigned": [{"name": "A"}]}])
    version = emulator.admin("POST", f"datasets/{workspace.dataset}/models", {"tag": "live"})["version"]
    stream = hook.put_stream(workspace.dataset, "plain", model_version=version)  # no thresholds, as the hook sends
    assert_conforms(stream, STREAM)
    assert stream["model"] == {"version": version, "label_thresholds": []}
    base = f"api/v1/datasets/{workspace.dataset}"
    for plural, singular in (("streams", "stream"), ("triggers", "trigger")):
        assert_conforms(call(emulator, "GET", f"{base}/{plural}/plain")[singular], STREAM)
        assert_conforms(call(emulator, "GET", f"{base}/{plural}")[plural], [STREAM])
        batch = call(emulator, "POST", f"{base}/{plural}/plain/fetch", {"size": 8})
        assert_conforms(batch, BATCH)
        reset = call(
            emulator, "POST", f"{base}/{plural}/plain/reset", {"to_comment_created_at": "2020-01-01T00:00:00Z"}
        )
        assert_conforms(reset[singular], STREAM)
        assert isinstance(reset["sequence_id"], str)
        batch = call(emulator, "POST", f"{base}/{plural}/plain/fetch", {"size": 8})
        assert_conforms(batch, BATCH)
        assert batch["results"]
        call(emulator, "POST", f"{base}/{plural}/plain/advance", {"sequence_id": batch["sequence_id"]})
        exception = {"exceptions": [{"uid": f"{workspace.source_id}.s0", "metadata": {"type": "t"}}]}
        call(emulator, "PUT", f"{base}/{plural}/plain/exceptions", exception)
        call(emulator, "DELETE", f"{base}/{plural}/plain/exceptions?uid={workspace.source_id}.s0")
    results = call(emulator, "GET", f"{base}/streams/plain/results?max_results=4")
    assert_conforms(results, {"results": [STREAM_RESULT], "continuation": str, "is_end_sequence": bool})


def test_the_old_trigger_routes_create_update_and_delete(emulator, hook, workspace):
    base = f"api/v1/datasets/{workspace.dataset}/triggers"
    created = call(emulator, "PUT", base, {"trigger": {"name": "legacy", "title": "Legacy"}})["trigger"]
    assert_conforms(created, STREAM)
    updated = call(emulator, "POST", f"{base}/legacy", {"trigger": {"title": "Renamed"}})["trigger"]
    assert updated["title"] == "Renamed" and updated["id"] == created["id"]
    assert hook.get_stream(workspace.dataset, "legacy")["title"] == "Renamed"  # one resource, two names
    call(emulator, "DELETE", f"{base}/legacy")
    assert requests.get(f"{emulator.url}/{base}/legacy", headers=AUTH, timeout=10).status_code == 404


def test_model_routes(emulator, hook, workspace):
    hook.sync_comments(workspace.source, [make_record("m0", "2026-10-01T00:00:00Z")["comment"]])
    hook.update_annotations(workspace.dataset, f"{workspace.source_id}.m0", labelling=[{"assigned": [{"name": "A"}]}])
    emulator.admin("POST", f"datasets/{workspace.dataset}/models", {"tag": "staging"})
    labellers = call(emulator, "POST", f"api/_private/datasets/{workspace.dataset}/labellers", {})
    assert_conforms(
        labellers, {"labellers": [{"version": U32, "model_id": str, "trained_time": TIME}], "dataset_status": dict}
    )
    tags = call(emulator, "GET", f"api/v1/datasets/{workspace.dataset}/model-tags")["model_tags"]
    assert_conforms(tags, [{"name": str, "version": U32, "updated_at": TIME}])
    predicted = call(
        emulator,
        "POST",
        f"api/v1/datasets/{workspace.dataset}/labellers/staging/predict",
        {"documents": [{"messages": [{"body": {"text": "hello"}}]}], "threshold": "auto"},
    )
    assert_conforms(predicted, {"predictions": [{"labels": [{"name": [str], "probability": float}], "entities": list}]})
    billed = emulator.stats()["billed_predictions"]
    uid = f"{workspace.source_id}.m0"
    by_uid = call(
        emulator,
        "POST",
        f"api/v1/datasets/{workspace.dataset}/labellers/staging/predict-comments",
        {"uids": [uid], "threshold": "auto"},
    )
    assert_conforms(by_uid, {"predictions": [{"uid": str, "labels": Optional([PREDICTED_LABEL]), "entities": list}]})
    assert by_uid["predictions"][0]["uid"] == uid
    assert emulator.stats()["billed_predictions"] == billed  # comments already in the platform are not billed


def test_projects_and_user(emulator, hook, workspace):
    project = {
        "id": Optional(str),
        "name": str,
        "title": str,
        "description": str,
        "created_at": TIME,
        "updated_at": TIME,
    }
    assert_conforms(call(emulator, "GET", f"api/_private/projects/{workspace.project}")["project"], project)
    assert_conforms(call(emulator, "GET", "api/_private/projects")["projects"], [project])
    user = {
        "id": str,
        "username": str,
        "email": str,
        "created": TIME,
        "global_permissions": [str],
        "organisation_permissions": dict,
        "verified": bool,
    }
    assert_conforms(call(emulator, "GET", "auth/user")["user"], user)
