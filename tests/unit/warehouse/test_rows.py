"""Rows of the typed warehouse model from real exported comments (BANKING77 through the emulator)."""

from __future__ import annotations

import copy
from datetime import datetime, timezone

import pytest
import requests

from airflow_provider_cm.pipelines.warehouse.model import COMMENTS, DATA_TABLES, ROW_HASH, TABLES
from airflow_provider_cm.pipelines.warehouse.row_hash import row_hash
from airflow_provider_cm.pipelines.warehouse.rows import RowError, comment_rows, page_rows
from tests.conftest import TOKEN

AT = datetime(2026, 11, 1, 3, 0, tzinfo=timezone.utc)


def rows_of(exported, **kwargs):
    return comment_rows(exported, load_id="load-1", extracted_at=AT, **kwargs).tables


def test_a_comment_row_is_typed(banking):
    workspace, exported = banking
    first = exported[0]
    row = rows_of(first)["comments"][0]
    assert row["uid"] == first["comment"]["uid"] and row["source_id"] == workspace.source_id
    assert row["comment_id"] == first["comment"]["id"]
    assert row["timestamp"] == datetime(2026, 10, 1, 0, 3, 35, tzinfo=timezone.utc)
    assert row["created_at"].tzinfo == timezone.utc
    assert row["body"] == first["comment"]["messages"][0]["body"]["text"]
    assert row["user_properties"] == first["comment"]["user_properties"] and row["recipients"] == []
    assert row["has_annotations"] is True and row["model_version"] is None
    assert (row["_cm_load_id"], row["_cm_extracted_at"], row["_cm_deleted_at"]) == ("load-1", AT, None)
    assert set(row) == set(COMMENTS.column_names)


def test_label_rows_hold_levels_kinds_sentiments_probabilities_and_metadata(banking):
    _, exported = banking
    for item in exported[:20]:
        labels = rows_of(item)["comment_labels"]
        assigned = [r for r in labels if r["kind"] == "assigned"]
        predicted = [r for r in labels if r["kind"] == "predicted"]
        leaf = item["annotations"]["labels"]["assigned"][-1]
        child = next(r for r in assigned if r["depth"] == 2)
        parent = next(r for r in assigned if r["depth"] == 1)
        assert child["label"] == leaf["name"] and (child["level_1"], child["level_2"]) == tuple(
            leaf["name"].split(" > ")
        )
        assert parent["label"] == child["level_1"] and parent["level_2"] is None
        assert child["sentiment"] == {"positive": 1.0, "negative": -1.0}[leaf["sentiment"]]
        assert child["metadata"]["user_id"] == "analyst" and parent["metadata"] is None
        assert child["probability"] is None and child["model_version"] is None
        assert [(r["label"], r["probability"]) for r in predicted] == [
            (p["name"], p["probability"]) for p in item["predictions"]["labels"]
        ]
        assert all(isinstance(r["probability"], float) and r["model_version"] is None for r in predicted)


def test_predictions_of_a_pinned_version_name_it(banking, emulator):
    workspace, exported = banking
    items = exported[:10]
    answer = requests.post(
        f"{emulator.url}/api/v1/datasets/{workspace.dataset}/labellers/live/predict-comments",
        json={"uids": [i["comment"]["uid"] for i in items], "threshold": 0.01},
        headers={"Authorization": f"Bearer {TOKEN}"},
        timeout=30,
    ).json()["predictions"]
    by_uid = {p["uid"]: p for p in answer}
    rows = page_rows(items, load_id="l", extracted_at=AT, model_version=1, predictions_by_uid=by_uid).tables
    predicted = [r for r in rows["comment_labels"] if r["kind"] == "predicted"]
    assert predicted and all(r["model_version"] == 1 for r in predicted)
    assert {r["model_version"] for r in rows["comments"]} == {1}
    assert all(r["model_version"] is None for r in rows["comment_labels"] if r["kind"] == "assigned")
    first_uid = items[0]["comment"]["uid"]
    assert sorted(r["label"] for r in predicted if r["uid"] == first_uid) == sorted(
        " > ".join(label["name"]) for label in by_uid[first_uid]["labels"]
    )


def test_user_properties_are_typed_rows(banking):
    _, exported = banking
    item = copy.deepcopy(exported[0])
    item["comment"]["user_properties"]["number:Spend"] = 12.5
    rows = {row["name"]: row for row in rows_of(item)["comment_user_properties"]}
    channel, spend = rows["Channel"], rows["Spend"]
    assert channel["type"] == "string" and channel["number_value"] is None
    assert channel["string_value"] == exported[0]["comment"]["user_properties"]["string:Channel"]
    assert (spend["type"], spend["number_value"], spend["string_value"]) == ("number", 12.5, None)


def test_entities_become_rows_with_their_spans(banking):
    _, exported = banking
    item = copy.deepcopy(exported[0])
    span = {"content_part": "body", "message_index": 0, "utf16_byte_start": 0, "utf16_byte_end": 2}
    item["annotations"]["entities"] = {"assigned": [{"name": "amount", "formatted_value": "GBP 5", "span": span}]}
    entities = rows_of(item)["comment_entities"]
    assert [(e["kind"], e["position"], e["name"], e["formatted_value"], e["spans"]) for e in entities] == [
        ("assigned", 0, "amount", "GBP 5", [span])
    ]


def test_a_dataset_whose_labels_have_no_metadata_still_loads(banking):
    _, exported = banking
    item = copy.deepcopy(exported[0])
    for label in item["annotations"]["labels"]["assigned"]:
        label.pop("metadata", None)
    assert all(r["metadata"] is None for r in rows_of(item)["comment_labels"])


def test_the_row_hash_is_stable_and_covers_only_data(banking):
    _, exported = banking
    first = comment_rows(exported[0], load_id="a", extracted_at=AT).tables
    again = comment_rows(exported[0], load_id="b", extracted_at=datetime(2027, 1, 1, tzinfo=timezone.utc)).tables
    for spec in DATA_TABLES:
        assert [r[ROW_HASH] for r in first[spec.name]] == [r[ROW_HASH] for r in again[spec.name]]
    changed = copy.deepcopy(exported[0])
    changed["predictions"]["labels"][0]["probability"] += 0.001
    hashes = {r["label"]: r[ROW_HASH] for r in rows_of(changed)["comment_labels"] if r["kind"] == "predicted"}
    before = {r["label"]: r[ROW_HASH] for r in first["comment_labels"] if r["kind"] == "predicted"}
    top = changed["predictions"]["labels"][0]["name"]
    assert hashes[top] != before[top] and all(hashes[k] == before[k] for k in before if k != top)


def test_the_row_hash_does_not_change_between_releases():
    row = {"uid": "s.1", "timestamp": datetime(2026, 10, 1, tzinfo=timezone.utc), "p": 0.25, "j": {"b": 1, "a": [1]}}
    assert row_hash(row, ["uid", "timestamp", "p", "j", "missing"]) == (
        "b4419937a621c75f37539791419ec430f3cfa4d1de569e41434514c31cd9e3f2"
    )


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda c: c["comment"].pop("uid"), "no uid"),
        (lambda c: c["comment"].update(timestamp="yesterday"), "timestamp is not an ISO-8601 time"),
        (lambda c: c["comment"]["user_properties"].update(Channel="x"), "'Channel' has no 'string:'"),
        (lambda c: c["comment"]["user_properties"].update({"number:n": "1"}), "'number:n' must be a number"),
    ],
)
def test_a_comment_that_cannot_be_rows_is_named(banking, change, message):
    _, exported = banking
    item = copy.deepcopy(exported[0])
    change(item)
    with pytest.raises(RowError, match=message) as caught:
        rows_of(item)
    if "uid" in item["comment"]:
        assert item["comment"]["uid"] in str(caught.value)


def test_every_table_has_a_key_and_the_metadata_columns():
    for spec in TABLES:
        assert spec.key
    for spec in DATA_TABLES:
        assert {"_cm_load_id", "_cm_extracted_at", "_cm_row_hash", "_cm_deleted_at"} <= set(spec.column_names)


#: One exported comment using every field the rows read (two messages, every kind of label, entities,
#: both kinds of user property, predictions with sentiment and metadata).
RICH = {
    "comment": {
        "uid": "0123456789abcdef.rich-1",
        "id": "rich-1",
        "thread_id": "t-9",
        "timestamp": "2026-10-02T08:30:00.123456Z",
        "created_at": "2026-10-02T09:00:00Z",
        "messages": [
            {
                "from": "a@x.com",
                "to": ["b@y.com"],
                "cc": ["c@y.com"],
                "subject": {"text": "Card"},
                "body": {"text": "Lost"},
            },
            {"from": "b@y.com", "to": ["a@x.com"], "body": {"text": "Sorry"}},
        ],
        "user_properties": {"string:Team": "cards", "number:Score": 7.5},
        "has_annotations": True,
    },
    "annotations": {
        "labels": {
            "assigned": [{"name": ["Card", "Lost"], "sentiment": "negative", "metadata": {"source": "ui"}}],
            "dismissed": [{"name": "Refund"}],
        },
        "entities": {"assigned": [{"name": "order_id", "formatted_value": "A-1", "span": {"content_part": "body"}}]},
    },
    "predictions": {
        "labels": [{"name": ["Card"], "probability": 0.91, "sentiment": -0.4}],
        "entities": [{"kind": "iban", "formatted_value": "GB00", "probability": 0.7, "spans": []}],
    },
}


def test_the_rows_format_changes_with_the_rows_built():
    """A load skips building the rows of a comment whose hash is stored: rows built otherwise from the same
    comment (a column, a type, a name) must come with a new ``ROWS_FORMAT``, or stored rows would stay stale.

    If this fails after a deliberate change to how rows are built, bump ``rows.ROWS_FORMAT`` and put the new
    digest here."""
    import hashlib
    import json

    from airflow_provider_cm.pipelines.warehouse.rows import ROWS_FORMAT

    built = page_rows([RICH], load_id="load-1", extracted_at=AT).tables
    text = json.dumps(built, sort_keys=True, default=str)
    assert (ROWS_FORMAT, hashlib.sha256(text.encode()).hexdigest()) == (
        1,
        "af5cf75f5ab0ec00eeee5003f5bc4b89c7dd7c660b6ba430c0261f1546c01999",
    )


def test_a_comment_hash_ignores_key_order_and_follows_every_input():
    from airflow_provider_cm.pipelines.warehouse.rows import comment_hash

    reordered = json_reordered(RICH)
    assert comment_hash(reordered, None, None) == comment_hash(RICH, None, None)
    relabelled = copy.deepcopy(RICH)
    relabelled["annotations"]["labels"]["dismissed"] = []
    pinned = {"labels": [{"name": "Card", "probability": 0.91}]}
    hashes = {
        comment_hash(RICH, None, None),
        comment_hash(relabelled, None, None),
        comment_hash(RICH, pinned, 3),
        comment_hash(RICH, pinned, 4),
        comment_hash(RICH, {"labels": []}, 3),
    }
    assert len(hashes) == 5


def json_reordered(value):
    """``value`` with every object's keys in reverse order."""
    if isinstance(value, dict):
        return {key: json_reordered(value[key]) for key in reversed(list(value))}
    if isinstance(value, list):
        return [json_reordered(item) for item in value]
    return value
