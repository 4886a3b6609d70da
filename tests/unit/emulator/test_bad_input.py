"""Malformed request bodies get 400 with the JSON error envelope: never 200, never a 5xx.

Each case is one field of one body the emulator accepts, with a value of the wrong type or out
of its documented range (the Swagger's and the CLI's types, the reference's limits). A generated
run then mutates every field of valid bodies with arbitrary JSON and checks that nothing answers
a 5xx or anything but the envelope. The emulator's application runs in process.

A comment's own fields are the cases of the one schema of a comment, which the client's
validator and the emulator share: ``tests/unit/upload/test_comment_validation.py`` checks that the
emulator refuses each of them in the validator's words.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import TOKEN, make_record, new_workspace

AUTH = {"Authorization": f"Bearer {TOKEN}"}
MESSAGE = {"body": {"text": "hello"}}
COMMENT = {"id": "x1", "timestamp": "2026-10-01T00:00:00Z", "messages": [MESSAGE]}


@pytest.fixture(scope="module")
def ws(emulator):
    """A workspace with a comment, a pinned model tagged live and a stream on it."""
    from airflow_provider_cm.hooks.communications_mining import CommunicationsMiningHook

    hook = CommunicationsMiningHook()
    workspace = new_workspace(hook)
    hook.sync_comments(workspace.source, [make_record("c0", "2026-10-01T00:00:00Z")["comment"]])
    uid = f"{workspace.source_id}.c0"
    hook.update_annotations(workspace.dataset, uid, labelling=[{"assigned": [{"name": "A"}]}])
    emulator.admin("POST", f"datasets/{workspace.dataset}/models", {"tag": "live"})
    hook.put_stream(workspace.dataset, "s", model_version=1)
    workspace.uid = uid
    yield workspace
    hook.close()


def routes(ws: Any) -> dict[str, tuple[str, str]]:
    """Route name -> (method, path) for the workspace."""
    d = f"api/v1/datasets/{ws.dataset}"
    return {
        "project": ("PUT", "api/_private/projects/{new}"),
        "source": ("PUT", f"api/v1/sources/{ws.project}/{{new}}"),
        "update_source": ("POST", f"api/v1/sources/{ws.source}"),
        "sync": ("POST", f"api/v1/sources/{ws.source}/sync"),
        "put_comments": ("PUT", f"api/_private/sources/{ws.source}/comments"),
        "dataset": ("PUT", f"api/v1/datasets/{ws.project}/{{new}}"),
        "update_dataset": ("POST", d),
        "labelling": ("POST", f"api/_private/datasets/{ws.dataset}/labellings/{ws.uid}"),
        "export": ("POST", f"{d}/export"),
        "stream": ("PUT", f"{d}/streams"),
        "trigger": ("PUT", f"{d}/triggers"),
        "fetch": ("POST", f"{d}/streams/s/fetch"),
        "advance": ("POST", f"{d}/streams/s/advance"),
        "reset": ("POST", f"{d}/streams/s/reset"),
        "exceptions": ("PUT", f"{d}/streams/s/exceptions"),
        "predict": ("POST", f"{d}/labellers/live/predict"),
        "predict_comments": ("POST", f"{d}/labellers/live/predict-comments"),
        "move_tag": ("PUT", f"_emulator/datasets/{ws.dataset}/model-tags/live"),
        "oauth": ("POST", "_emulator/oauth"),
    }


def send(emulator: Any, ws: Any, route: str, body: Any) -> requests.Response:
    method, path = routes(ws)[route]
    path = path.replace("{new}", "n" + str(abs(hash(json.dumps(body, sort_keys=True, default=str))))[:12])
    return requests.request(method, f"{emulator.url}/{path}", json=body, headers=AUTH, timeout=30)


def comment(**fields: Any) -> dict[str, Any]:
    return {"comments": [COMMENT | fields]}


def message(**fields: Any) -> dict[str, Any]:
    return comment(messages=[MESSAGE | fields])


def stream(**fields: Any) -> dict[str, Any]:
    return {"stream": {"name": "bad"} | fields}


def labels(**fields: Any) -> dict[str, Any]:
    return {"labelling": [{"group": "default", "assigned": [{"name": "A"} | fields]}]}


def document(message_: Any) -> dict[str, Any]:
    return {"documents": [{"messages": [message_]}]}


MALFORMED = [
    # the findings
    ("source", {"source": {"title": 5}}, "title"),
    ("source", {"source": {"language": "klingon"}}, "language"),
    ("stream", stream(comment_filter={"sources": "not a list"}), "sources"),
    ("stream", stream(comment_filter={"reviewed": "sometimes"}), "reviewed"),
    ("predict", document({"body": 5}), "body"),
    ("predict", document(5), "messages[0]"),
    ("stream", stream(comment_filter={"user_properties": {"number:Spend": 5}}), "number:Spend"),
    # the same class: every field of every body
    ("project", {"project": {"title": 5}}, "title"),
    ("project", {"project": "x"}, "project"),
    ("source", {"source": {"should_translate": "yes"}}, "should_translate"),
    ("source", {"source": {"sensitive_properties": "x"}}, "sensitive_properties"),
    ("source", {"source": {"bucket_id": 7}}, "bucket_id"),
    ("update_source", {"source": {"description": []}}, "description"),
    ("sync", {"comments": "x"}, "comments"),
    ("put_comments", comment(attachments=[{"name": "a", "size": -1, "content_type": "x"}]), "size"),
    ("dataset", {"dataset": {"has_sentiment": "yes"}}, "has_sentiment"),
    ("dataset", {"dataset": {"source_ids": "x"}}, "source_ids"),
    ("dataset", {"dataset": {"model_family": "klingon"}}, "model_family"),
    ("dataset", {"dataset": {"entity_defs": [{"title": "no name"}]}}, "name"),
    ("dataset", {"dataset": {"label_defs": [{"name": 5}]}}, "name"),
    ("update_dataset", {"dataset": {"title": 5}}, "title"),
    ("labelling", labels(name=5), "name"),
    ("labelling", labels(sentiment="meh"), "sentiment"),
    ("labelling", {"labelling": {"assigned": []}}, "labelling"),
    ("labelling", {"entities": {"assigned": "x"}}, "assigned"),
    ("labelling", {"entities": {"assigned": [{"formatted_value": "no name"}]}}, "name"),
    ("labelling", {"moon_forms": "x"}, "moon_forms"),
    ("export", {"limit": "10"}, "limit"),
    ("export", {"order_by": "size"}, "order_by"),
    ("export", {"from": 5}, "from"),
    ("export", {"source_ids": "x"}, "source_ids"),
    ("export", {"comment_uids": [5]}, "comment_uids"),
    ("stream", {"stream": "x"}, "stream"),
    ("stream", stream(title=5), "title"),
    ("stream", stream(model={"version": "1"}), "version"),
    ("stream", stream(model={"version": 1, "label_thresholds": [{"name": ["A"], "threshold": 2}]}), "threshold"),
    ("stream", stream(comment_filter={"timestamp": {"minimum": "soon"}}), "minimum"),
    ("stream", stream(comment_filter={"user_properties": {"Spend": {"one_of": [1]}}}), "Spend"),
    ("stream", stream(comment_filter={"user_properties": {"string:C": {"one_of": "uk"}}}), "one_of"),
    ("stream", stream(comment_filter={"user_properties": {"string:C": {"one_of": [5]}}}), "one_of"),
    ("stream", stream(comment_filter={"messages": {"from": {"one_of": "a"}}}), "one_of"),
    ("trigger", {"trigger": {"name": "t", "comment_filter": {"reviewed": 1}}}, "reviewed"),
    ("fetch", {"size": "8"}, "size"),
    ("fetch", {"size": 8, "max_filtered": 0}, "max_filtered"),
    ("fetch", {}, "size"),
    ("advance", {"sequence_id": 5}, "sequence_id"),
    ("advance", {"sequence_id": "not-a-position"}, "sequence_id"),
    ("reset", {"to_comment_created_at": 5}, "to_comment_created_at"),
    ("exceptions", {"exceptions": [{"uid": 5, "metadata": {"type": "t"}}]}, "uid"),
    ("exceptions", {"exceptions": [{"uid": "a.b", "metadata": {"type": 5}}]}, "type"),
    ("predict", {"documents": "x"}, "documents"),
    ("predict", {"documents": [{"messages": [MESSAGE], "user_properties": {"x": 1}}]}, "x"),
    ("predict", {"documents": [{"messages": [MESSAGE]}], "threshold": 2}, "threshold"),
    ("predict", {"documents": [{"messages": [MESSAGE]}], "labels": [{"name": 5}]}, "name"),
    ("predict_comments", {"uids": "x"}, "uids"),
    ("predict_comments", {"uids": ["a.b"], "threshold": "high"}, "threshold"),
    ("move_tag", {"version": "1"}, "version"),
    ("oauth", {"clients": {"id": 5}}, "clients"),
    ("oauth", {"token_lifetime": "long"}, "token_lifetime"),
]


@pytest.mark.parametrize(("route", "body", "field"), MALFORMED, ids=[f"{r}-{f}" for r, _, f in MALFORMED])
def test_a_malformed_body_gets_400_with_the_envelope_naming_the_field(emulator, ws, route, body, field):
    response = send(emulator, ws, route, body)
    assert response.status_code == 400, response.text
    payload = response.json()
    assert payload["status"] == "error" and field in payload["message"], payload


def test_a_stream_with_a_bad_user_property_filter_is_never_stored(emulator, ws, hook):
    bad = stream(comment_filter={"user_properties": {"number:Spend": 5}})
    send(emulator, ws, "stream", bad)
    fetched = requests.get(f"{emulator.url}/api/v1/datasets/{ws.dataset}/streams/bad", headers=AUTH, timeout=10)
    assert fetched.status_code == 404 and fetched.json()["status"] == "error"


JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**40), 2**40)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=6,
)
VALID = {
    "sync": {"comments": [COMMENT | {"user_properties": {"string:C": "uk"}, "thread_id": "t"}]},
    "stream": {"stream": {"name": "fuzz", "model": {"version": 1}, "comment_filter": {"sources": ["x"]}}},
    "predict": {"documents": [{"messages": [MESSAGE | {"subject": {"text": "s"}}]}], "threshold": 0.5},
    "export": {"limit": 5, "order_by": "timestamp", "from": "2026-01-01T00:00:00Z"},
    "labelling": {"labelling": [{"group": "default", "assigned": [{"name": "A", "sentiment": "positive"}]}]},
    "dataset": {"dataset": {"title": "t", "has_sentiment": True, "label_defs": [{"name": "A"}]}},
    "source": {"source": {"title": "t", "language": "en"}},
    "fetch": {"size": 4, "max_filtered": 4},
}


def paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path to a value inside a JSON document."""
    out = [prefix]
    if isinstance(value, dict):
        for key, item in value.items():
            out.extend(paths(item, (*prefix, key)))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            out.extend(paths(item, (*prefix, index)))
    return out


def replaced(document_: Any, path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    copy = json.loads(json.dumps(document_))
    target = copy
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = value
    return copy


@settings(max_examples=150, derandomize=True, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_generated_bodies_never_get_a_5xx_or_a_bare_answer(emulator, ws, data):
    route = data.draw(st.sampled_from(sorted(VALID)))
    path = data.draw(st.sampled_from(paths(VALID[route])))
    body = replaced(VALID[route], path, data.draw(JSON))
    response = send(emulator, ws, route, body)
    assert response.status_code < 500, (route, body, response.text)
    assert response.json()["status"] == ("ok" if response.status_code < 300 else "error")
